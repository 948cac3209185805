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
