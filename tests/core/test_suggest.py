"""Tests of point suggestions (core/suggest.py) on built images and on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_sseg.core.expand import expand
from napari_sseg.core.metrics import IGNORE, ConfusionMatrix
from napari_sseg.core.points import PointSet
from napari_sseg.core.sampling import oracle_labels, sample_points
from napari_sseg.core.suggest import SuggestOptions, acquisition_map, suggest_points


def quadrant_image(shape=(120, 160), seed=0):
    """Four flat-coloured quadrants with noise, and their class mask (0..3)."""
    m, n = shape
    gt = np.zeros(shape, dtype=np.uint8)
    gt[: m // 2, n // 2:] = 1
    gt[m // 2:, : n // 2] = 2
    gt[m // 2:, n // 2:] = 3
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [220, 220, 60]], float)
    rng = np.random.default_rng(seed)
    img = colours[gt] + rng.normal(0, 6, (m, n, 3))
    return np.clip(img, 0, 255).astype(np.uint8), gt


def as_pixels(coords):
    return {tuple(p) for p in np.floor(np.asarray(coords) + 0.5).astype(int).tolist()}


def test_zero_points_covers_every_distinct_region():
    img, gt = quadrant_image()
    coords = suggest_points(img, PointSet.empty(), None, 4, seed=0)
    assert coords.shape == (4, 2) and coords.dtype == np.float64
    # pure exploration spreads the first batch over all four colours
    assert set(oracle_labels(gt, coords).tolist()) == {0, 1, 2, 3}


def test_suggestions_in_bounds_distinct_and_not_on_points():
    img, gt = quadrant_image()
    pts = sample_points(gt, 30, rng=1)
    coords = suggest_points(img, pts, expand(img, pts), 40, seed=3)
    assert coords.shape == (40, 2)
    assert np.all(coords >= 0) and np.all(coords[:, 0] <= 119) and np.all(coords[:, 1] <= 159)
    got = as_pixels(coords)
    assert len(got) == 40  # no two suggestions share a pixel
    assert not got & as_pixels(pts.coords)


def test_respects_ignore_mask():
    img, gt = quadrant_image()
    ignore = np.zeros(gt.shape, dtype=bool)
    ignore[:, :100] = True  # only the right part may be suggested
    ignore[50:70, 120:140] = True
    coords = suggest_points(img, PointSet.empty(), None, 25, ignore_mask=ignore, seed=0)
    assert len(coords) == 25
    rows, cols = np.floor(coords + 0.5).astype(int).T
    assert not ignore[rows, cols].any()


def test_deterministic_for_a_seed():
    img, gt = quadrant_image()
    pts = sample_points(gt, 6, rng=2)
    exp = expand(img, pts)
    a = suggest_points(img, pts, exp, 10, seed=7)
    b = suggest_points(img, pts, exp, 10, seed=7)
    np.testing.assert_array_equal(a, b)
    # the random part of a batch (fraction < 1) follows the seed
    opts = SuggestOptions(fraction=0.2)
    c = suggest_points(img, pts, exp, 10, seed=7, options=opts)
    d = suggest_points(img, pts, exp, 10, seed=8, options=opts)
    np.testing.assert_array_equal(c, suggest_points(img, pts, exp, 10, seed=7, options=opts))
    assert not np.array_equal(c, d)


def test_fewer_free_pixels_than_asked_returns_what_exists():
    img, gt = quadrant_image((8, 8))
    ignore = np.ones(gt.shape, dtype=bool)
    ignore[2, 3] = ignore[5, 5] = False
    coords = suggest_points(img, PointSet.empty(), None, 10, ignore_mask=ignore)
    assert as_pixels(coords) == {(2, 3), (5, 5)}
    assert suggest_points(img, PointSet.empty(), None, 0).shape == (0, 2)


def test_uncovered_proposal_is_targeted():
    # a flat image: only the proposals tell where objects are; the one with no point is chosen
    img = np.full((100, 100), 128, dtype=np.uint8)
    masks = [np.zeros((100, 100), bool) for _ in range(3)]
    masks[0][5:45, 5:45] = True
    masks[1][55:95, 5:45] = True
    masks[2][30:70, 55:95] = True
    pts = PointSet([[25, 25], [75, 25]], [0, 1])
    opts = SuggestOptions(w_uncertainty=0, w_novelty=0, lam=0.9)
    for props in (masks, np.argmax(np.stack([np.zeros((100, 100), bool)] + masks), axis=0)):
        coords = suggest_points(img, pts, None, 1, proposals=props, options=opts)
        r, c = np.floor(coords[0] + 0.5).astype(int)
        assert masks[2][r, c]


def test_expansion_disagreement_and_low_confidence_attract_points():
    from napari_sseg.core.expand import Expansion

    img = np.full((90, 90, 3), 100, dtype=np.uint8)
    pts = PointSet([[45, 45]], [0])
    conf = np.ones((90, 90), np.float32)
    disagree = np.zeros((90, 90), np.float32)
    disagree[70:85, 5:20] = 1.0  # SAM2 and the fill disagree only here
    opts = SuggestOptions(w_uncertainty=5.0)
    info = {"classes": [0, 1], "disagreement": disagree}
    exp = Expansion(np.zeros((90, 90), np.uint8), conf, info)
    r, c = suggest_points(img, pts, exp, 1, options=opts)[0].astype(int)
    assert disagree[r, c] == 1
    conf2 = conf.copy()
    conf2[5:20, 60:80] = 0.5  # low confidence only here
    exp2 = Expansion(np.zeros((90, 90), np.uint8), conf2, {"classes": [0, 1]})
    r, c = suggest_points(img, pts, exp2, 1, options=opts)[0].astype(int)
    assert conf2[r, c] == 0.5


def test_acquisition_map_shape_and_zero_where_ignored():
    img, gt = quadrant_image()
    pts = sample_points(gt, 8, rng=0)
    ignore = np.zeros(gt.shape, dtype=bool)
    ignore[:40] = True
    amap = acquisition_map(img, pts, expand(img, pts), ignore_mask=ignore)
    assert amap.shape == gt.shape and amap.dtype == np.float32
    assert np.all(amap[:40] == 0)
    assert amap.max() == pytest.approx(1.0) and amap.min() >= 0


def test_bad_input_is_named():
    img, gt = quadrant_image()
    pts = sample_points(gt, 4, rng=0)
    with pytest.raises(ValueError, match="ignore mask"):
        suggest_points(img, pts, None, 2, ignore_mask=np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="non-negative"):
        suggest_points(img, pts, None, -1)
    with pytest.raises(ValueError, match="proposal mask #1"):
        suggest_points(img, pts, None, 2, proposals=[gt == 0, np.zeros((3, 3), bool)])


def _simulate_suggest(img, gt, budget, batch, seed):
    pts, exp = PointSet.empty(), None
    while len(pts) < budget:
        coords = suggest_points(img, pts, exp, min(batch, budget - len(pts)),
                                ignore_mask=gt == IGNORE, seed=seed + len(pts))
        pts = pts.appended(coords, oracle_labels(gt, coords))
        exp = expand(img, pts)
    return exp.labels


def suggest_and_random_miou(data: Path, every: int = 9, budget: int = 25, seeds: int = 3):
    """mIoU of suggested points (rounds of 5) and mean mIoU of random points on Dubai tiles."""
    from PIL import Image

    names = sorted((data / "aerial_dubai" / "images").iterdir())[::every]
    cm_s, cm_r = ConfusionMatrix(), [ConfusionMatrix() for _ in range(seeds)]
    for i, path in enumerate(names):
        img = np.asarray(Image.open(path))
        gt = np.asarray(Image.open(data / "aerial_dubai" / "masks" / f"{path.stem}.png"))
        cm_s.update(gt, _simulate_suggest(img, gt, budget, 5, seed=i))
        for s in range(seeds):
            cm_r[s].update(gt, expand(img, sample_points(gt, budget, rng=[s, i])).labels)
    return cm_s.scores()["miou"], float(np.mean([c.scores()["miou"] for c in cm_r]))


def test_suggest_beats_random_on_real_images(shared_data):
    # every 9th Dubai tile (5 images), 25 points (the budget of issue 17's bar) in rounds of 5;
    # measured 2026-12-03: suggest 44.9 mIoU vs random 37.5 (mean of 3 seeds). At 15 points one
    # run of the loop swings by several points with any setting (interior_power 1 / 0.5 / 0:
    # 46.8 / 36.2 / 39.5 against random 37.4), too noisy for a margin
    miou_suggest, miou_random = suggest_and_random_miou(shared_data)
    assert miou_suggest > miou_random + 0.03
