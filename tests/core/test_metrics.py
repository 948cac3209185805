import numpy as np
import pytest

from napari_sseg.core.metrics import ConfusionMatrix, segmentation_scores


def test_scores_by_hand():
    gt = np.array([[0, 0, 1, 1], [255, 255, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 2, 1]])
    cm = ConfusionMatrix()
    cm.update(gt, pred)
    s = cm.scores()
    # class 0: tp 1, gt 2, pred 1 -> IoU 1/2 ; class 1: tp 3, gt 4, pred 4 -> IoU 3/5
    assert s["pixels"] == 6
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    assert s["per_class_iou"] == pytest.approx({0: 0.5, 1: 0.6})
    assert s["mean_class_accuracy"] == pytest.approx((0.5 + 0.75) / 2)
    assert s["miou"] == pytest.approx(0.55)
    # class 2 is absent from the ground truth: not averaged, but its pixel counts as an error
    assert 2 not in s["per_class_iou"]


def test_accumulates_over_images_of_different_class_sets():
    cm = ConfusionMatrix()
    cm.update(np.zeros((2, 2), int), np.zeros((2, 2), int))
    cm.update(np.full((1, 3), 4), np.full((1, 3), 4))
    assert cm.matrix.shape == (5, 5)
    assert cm.scores()["miou"] == 1.0


def test_shape_mismatch_and_empty():
    cm = ConfusionMatrix()
    with pytest.raises(ValueError, match="differ"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    assert np.isnan(segmentation_scores(np.zeros((2, 2)))["miou"])


def test_large_class_ids_cost_no_memory_and_ignore_none():
    cm = ConfusionMatrix(ignore_index=None)
    cm.update(np.array([[0, 60000], [4_000_000_000, 255]]), np.array([[0, 60000], [1, 255]]))
    assert cm.ids.tolist() == [0, 1, 255, 60000, 4_000_000_000]
    s = cm.scores()
    assert s["pixels"] == 4 and s["per_class_iou"] == {0: 1.0, 255: 1.0, 60000: 1.0,
                                                       4_000_000_000: 0.0}
    with pytest.raises(ValueError, match="too large for a dense"):
        cm.matrix
    # dropping the ignore value afterwards equals skipping it while counting
    skipped = ConfusionMatrix()
    skipped.update(np.array([[0, 60000], [4_000_000_000, 255]]), np.array([[0, 60000], [1, 255]]))
    assert cm.without(255).scores() == skipped.scores()


@pytest.mark.parametrize("gt, pred, requested, index, warn", [
    ({0: 10, 1: 5}, None, "auto", None, False),             # no 255: nothing to skip
    ({0: 10, 255: 5}, None, "auto", None, True),            # binary mask: 255 is a class
    ({255: 8}, None, "auto", 255, True),                    # all 255: skipped, then nothing left
    ({0: 10, 1: 3, 255: 2}, {0: 15}, "auto", 255, False),   # the usual "unlabelled"
    ({0: 1, 1: 1, 255: 8}, {0: 10}, "auto", 255, True),     # mostly 255: said as a warning
    ({0: 10, 1: 3, 255: 2}, {255: 4, 0: 11}, "auto", None, True),  # predictions hold 255
    ({0: 10, 255: 5}, None, 255, 255, False),               # the user's choice wins
    ({0: 10, 255: 5}, None, "none", None, False),
])
def test_choose_ignore_index(gt, pred, requested, index, warn):
    from napari_sseg.core.metrics import choose_ignore_index

    choice = choose_ignore_index(gt, pred, requested=requested)
    assert choice.index == index and choice.warn == warn


def test_scoring_problems():
    from napari_sseg.core.metrics import scoring_problems

    assert scoring_problems({255: 9}, 255).startswith("nothing to score")
    assert "one class only (0)" in scoring_problems({0: 5, 255: 9}, 255)
    assert scoring_problems({0: 5, 1: 2, 255: 9}, 255) is None
