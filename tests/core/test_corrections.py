"""Corrections: painted pixels keep their class, seed the expansion and spread to similar regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_sseg.core.corrections import (
    check_corrections,
    corrections_ignore_value,
    empty_corrections,
    kept_fraction,
    merge_known,
    oracle_disc,
    paint_disc,
    painted_mask,
)
from napari_sseg.core.expand import expand
from napari_sseg.core.fusion import iter_hybrid_expand
from napari_sseg.core.pipeline import iter_expand_image
from napari_sseg.core.points import PointSet
from napari_sseg.core.progress import run_generator
from napari_sseg.core.simulate import iter_simulate_corrections

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def squares_image():
    """Grey background (class 1), a bright blob (class 2) and two dark squares (class 3).

    Points are given for classes 1 and 2 only, so the expansion cannot know class 3.
    """
    rng = np.random.default_rng(0)
    img = np.full((120, 160), 110.0)
    gt = np.ones(img.shape, dtype=np.uint8)
    for (r0, r1, c0, c1), value, cls in (((10, 40, 110, 150), 200, 2), ((70, 110, 20, 60), 30, 3),
                                         ((15, 45, 15, 45), 30, 3)):
        img[r0:r1, c0:c1] = value
        gt[r0:r1, c0:c1] = cls
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    pts = PointSet([[60, 100], [100, 140], [5, 5], [115, 90], [25, 130], [35, 115]],
                   [1, 1, 1, 1, 2, 2])
    return img, gt, pts


def test_ignore_values_and_helpers():
    assert corrections_ignore_value(np.uint8) == 255
    assert corrections_ignore_value(np.uint16) == 65535
    assert corrections_ignore_value(np.int32) == -1
    with pytest.raises(ValueError, match="integer"):
        corrections_ignore_value(np.float32)
    corr = empty_corrections((5, 6), max_class_id=3)
    assert corr.dtype == np.uint8 and (corr == 255).all()
    assert empty_corrections((2, 2), max_class_id=300).dtype == np.uint16
    painted = paint_disc(corr, (2, 2), 1.0, 3)
    assert (corr == 255).all()  # the caller's array is untouched
    assert painted_mask(painted).sum() == 5  # a radius-1 disc: the centre and 4 neighbours
    known, mask = merge_known(np.zeros((5, 6), np.int32), painted, (5, 6))
    assert known[2, 2] == 3 and known[0, 0] == 0 and mask.sum() == 5
    assert merge_known(None, corr, (5, 6)) == (None, None)
    assert kept_fraction(np.full((5, 6), 3), painted) == 1.0
    assert kept_fraction(np.zeros((5, 6)), painted) == 0.0


def test_bad_corrections_are_clear_errors():
    with pytest.raises(ValueError, match="layer X: corrections of 4 rows x 4 columns do not match"):
        check_corrections(np.zeros((4, 4), np.uint8), (5, 6), source="layer X")
    with pytest.raises(ValueError, match="integer"):
        check_corrections(np.zeros((5, 6), np.float32), (5, 6))
    with pytest.raises(ValueError, match=r"class id\(s\) 7 are not among the classes \[1, 2\]"):
        check_corrections(np.full((5, 6), 7, np.uint8), (5, 6), classes=[1, 2])
    with pytest.raises(ValueError, match="negative class id -3"):
        check_corrections(np.full((5, 6), -3, np.int16), (5, 6))
    img, _, pts = squares_image()
    with pytest.raises(ValueError, match="do not match"):
        expand(img, pts, corrections=np.zeros((10, 10), np.uint8))


def test_correction_far_from_points_flips_whole_similar_regions():
    img, gt, pts = squares_image()
    before = expand(img, pts).labels
    assert (before[gt == 3] == 3).mean() == 0.0  # class 3 has no point
    corr = paint_disc(empty_corrections(img.shape), (90, 40), 3, 3)  # 29 pixels, one square
    after = expand(img, pts, corrections=corr)
    painted = painted_mask(corr)
    assert (after.labels[painted] == 3).all() and (after.confidence[painted] == 1).all()
    # the corrected square flips, and so does the other, similar square far away
    assert (after.labels[70:110, 20:60] == 3).mean() > 0.7
    assert (after.labels[15:45, 15:45] == 3).mean() > 0.6
    # the rest of the image is left as it was
    rest = gt != 3
    assert (after.labels[rest] == before[rest]).mean() > 0.97


def test_painted_pixels_win_over_points_and_work_without_points():
    img, _, pts = squares_image()
    corr = empty_corrections(img.shape)
    corr[58:63, 98:103] = 2  # over the class-1 point at (60, 100)
    out = expand(img, pts, corrections=corr).labels
    assert (out[58:63, 98:103] == 2).all()
    assert out[100, 140] == 1
    # uint16 corrections (65535 = not corrected) and no points at all
    corr16 = np.full(img.shape, 65535, np.uint16)
    corr16[80:100, 30:50] = 3
    corr16[60:65, 90:95] = 1
    alone = expand(img, PointSet.empty(), corrections=corr16).labels
    assert set(np.unique(alone)) == {1, 3}
    assert (alone[80:100, 30:50] == 3).all() and (alone[70:110, 20:60] == 3).mean() > 0.8
    with pytest.raises(ValueError, match="no labelled points"):
        expand(img, PointSet.empty(), corrections=np.full(img.shape, 255, np.uint8))


class MaskEverywhere:
    """A fake proposer whose one candidate covers the whole image."""

    name = "fake"

    def __init__(self, shape):
        self.shape = shape

    def set_image(self, image):
        pass

    def predict(self, points_rc, negatives_rc=None):
        from napari_sseg.backends.base import Candidates

        n = len(points_rc)
        logits = np.full((n, 1) + self.shape, 8.0, np.float32)
        return Candidates(logits, np.full((n, 1), 0.9, np.float32), self.shape)


def test_hybrid_painted_pixels_override_masks():
    img, gt, _ = squares_image()
    pts = PointSet([[60, 100]], [1])
    corr = empty_corrections(img.shape)
    corr[80:100, 30:50] = 3
    corr[0:3, :] = 2
    out = run_generator(iter_expand_image(img, pts, proposer=MaskEverywhere(img.shape),
                                          corrections=corr))
    assert out.info["method"] == "sam2+maskslic"
    assert (out.labels[80:100, 30:50] == 3).all() and (out.labels[0:3] == 2).all()
    assert (out.confidence[80:100, 30:50] == 1).all()
    assert out.labels[60, 100] == 1 and (out.labels[gt == 1] == 1).mean() > 0.9
    # corrections and no points: the proposer is not needed
    alone = run_generator(iter_hybrid_expand(img, PointSet.empty(), None, corrections=corr))
    assert (alone.labels[80:100, 30:50] == 3).all()


def test_oracle_disc_innermost_pixel_of_largest_wrong_region():
    gt = np.zeros((40, 50), np.uint8)
    pred = gt.copy()
    pred[5:26, 10:31] = 1  # the largest wrong region, centred on (15, 20)
    pred[30:34, 2:6] = 2
    gt[0, :] = 255
    disc = oracle_disc(pred, gt, radius=4)
    assert disc.label == 0 and disc.region_size == 21 * 21 and disc.center == (15, 20)
    assert oracle_disc(gt, gt) is None
    pred[5:26, 10:31] = 255  # unannotated predictions are wrong too; unannotated truth never
    gt[:, 40:] = 255
    pred[:, 40:] = 7
    assert oracle_disc(pred, gt).center == (15, 20)


def test_simulated_rounds_refined_arm_spreads_its_corrections():
    from napari_sseg.core.metrics import segmentation_scores

    img, gt, pts = squares_image()
    res = run_generator(iter_simulate_corrections(img, gt, pts, 2, radius=3))
    assert len(res.refined) == len(res.manual) == len(res.kept) == 3
    assert res.kept == [1.0] * 3
    np.testing.assert_array_equal(res.refined[0], res.manual[0])
    assert [d.label for d in res.discs["refined"]][:1] == [3]
    assert painted_mask(res.corrections).sum() == sum(
        int(painted_mask(paint_disc(empty_corrections(img.shape), d.center, 3, 1)).sum())
        for d in res.discs["refined"])
    # each arm follows its own errors: the manual arm paints both squares, one disc each
    assert {d.center for d in res.discs["manual"]} != {d.center for d in res.discs["refined"]}
    refined, manual = (segmentation_scores(m)["miou"] for m in (res.refined[-1], res.manual[-1]))
    assert refined > manual + 0.2


def test_simulated_rounds_keep_painted_pixels_on_a_real_slice():
    path = DATA / "em_isbi2012" / "images" / "03.png"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    from napari_sseg.core.sampling import sample_points
    from napari_sseg.io import read_image, read_label_image

    image = read_image(path)[:256, :256]
    gt = read_label_image(DATA / "em_isbi2012" / "masks" / "03.png")[:256, :256]
    pts = sample_points(gt, 10, rng=np.random.default_rng(1))
    res = run_generator(iter_simulate_corrections(image, gt, pts, 2, radius=8))
    assert res.kept == [1.0] * 3
    assert len(res.discs["refined"]) == len(res.discs["manual"]) == 2
    corr = res.corrections
    assert (res.refined_labels[painted_mask(corr)] == corr[painted_mask(corr)]).all()
    # the manual arm differs from the first mask only inside its two discs
    changed = res.manual[-1].sum() - np.trace(res.manual[-1]) - (
        res.manual[0].sum() - np.trace(res.manual[0]))
    assert -2 * 201 <= changed < 0
