"""The hybrid expansion's logic with a fake proposer whose masks are known exactly.

The fake proposer returns full-resolution logits (+8 inside its masks, -8 outside), so the
low-resolution grid is the image itself and every rule can be checked pixel for pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sseg.backends.base import Candidates, MaskProposer, sample_grid, upsample_crop
from napari_sseg.core.expand import iter_expand
from napari_sseg.core.fusion import (
    HybridOptions,
    _nearer_to_other,
    choose_candidate,
    iter_hybrid_expand,
    resolve_conflicts,
)
from napari_sseg.core.points import PointSet, PointsOutOfBoundsError
from napari_sseg.core.progress import Progress, run_generator


class FakeProposer:
    """Known candidate masks per prompt pixel; records what it was asked."""

    name = "fake"

    def __init__(self, shape, masks_by_point, default=None):
        self.shape = shape
        self.masks_by_point = {tuple(k): v for k, v in masks_by_point.items()}
        self.default = default
        self.set_image_calls = 0
        self.calls = []  # (point, negatives)

    def set_image(self, image):
        assert image.shape[:2] == self.shape
        self.set_image_calls += 1

    def predict(self, points_rc, negatives_rc=None):
        logits, ious = [], []
        for i, pt in enumerate(np.asarray(points_rc)):
            key = (int(pt[0]), int(pt[1]))
            self.calls.append((key, np.asarray(negatives_rc[i]) if negatives_rc is not None else None))
            masks, iou = self.masks_by_point.get(key, self.default)
            logits.append(np.where(np.asarray(masks), 8.0, -8.0))
            ious.append(iou)
        return Candidates(np.array(logits, np.float32), np.array(ious, np.float32), self.shape)


def rect(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def expected_score(h, w, shape, iou, share=0.0):
    """Choice score of an h x w rectangle, computed from the formula by hand."""
    area = h * w
    perimeter = 2 * (h + w)
    comp = min(1.0, 2 * np.sqrt(np.pi * area) / perimeter)
    return iou + 0.8 * np.log1p(comp) - 1.4 * area / (shape[0] * shape[1]) - 1.0 * share


def test_fake_proposer_satisfies_protocol():
    assert isinstance(FakeProposer((4, 4), {}), MaskProposer)


def test_choice_rule_scores_and_pick():
    shape = (40, 60)
    cands = np.stack([rect(shape, 10, 20, 10, 20),   # 10x10 square, compact
                      rect(shape, 10, 12, 5, 55),    # 2x50 strip, not compact
                      rect(shape, 0, 40, 0, 60)])    # the whole image
    iou = np.array([0.80, 0.90, 0.95], np.float32)
    rows, cols, labels = np.array([15]), np.array([15]), np.array([1])
    logits = np.where(cands, 8.0, -8.0)
    choice = choose_candidate(logits, iou, 0, rows, cols, labels, shape, HybridOptions(min_iou=0.0))
    # the strip misses the point (row 15): rejected
    assert choice.reasons == ["", "misses_point", ""]
    exp0 = expected_score(10, 10, shape, 0.80)
    exp2 = expected_score(40, 60, shape, 0.95)
    assert choice.scores[0] == pytest.approx(exp0, abs=1e-6)
    assert choice.scores[2] == pytest.approx(exp2, abs=1e-6)
    assert np.isneginf(choice.scores[1])
    assert choice.index == (0 if exp0 > exp2 else 2) == 0
    assert not choice.trimmed


def test_low_predicted_iou_is_rejected():
    shape = (30, 30)
    cands = np.stack([rect(shape, 5, 15, 5, 15), rect(shape, 0, 20, 0, 20)])
    logits = np.where(cands, 8.0, -8.0)
    rows, cols, labels = np.array([10]), np.array([10]), np.array([0])
    choice = choose_candidate(logits, np.array([0.3, 0.6], np.float32), 0, rows, cols, labels,
                              shape, HybridOptions(min_iou=0.5))
    assert choice.reasons == ["low_iou", ""] and choice.index == 1
    none = choose_candidate(logits, np.array([0.3, 0.4], np.float32), 0, rows, cols, labels,
                            shape, HybridOptions(min_iou=0.5))
    assert none.index == -1 and none.logits is None


def test_candidate_swallowing_other_classes_is_rejected_or_trimmed():
    shape = (20, 40)
    # point 0 (class 1) at (10, 5); point 1 (class 2) at (10, 25); point 2 (class 2) at (10, 35)
    rows, cols, labels = np.array([10, 10, 10]), np.array([5, 25, 35]), np.array([1, 2, 2])
    whole = rect(shape, 0, 20, 0, 40)          # holds 1 own + 2 other points: share 2/3
    left = rect(shape, 0, 20, 0, 30)           # holds 1 own + 1 other: share 1/2, allowed
    logits = np.where(np.stack([whole, left]), 8.0, -8.0)
    iou = np.array([0.99, 0.9], np.float32)
    choice = choose_candidate(logits, iou, 0, rows, cols, labels, shape, HybridOptions(min_iou=0.0))
    assert choice.reasons == ["other_classes", ""]
    assert choice.index == 1 and choice.trimmed
    assert choice.scores[1] == pytest.approx(expected_score(20, 30, shape, 0.9, share=0.5), abs=1e-6)
    kept = choice.logits > 0
    # Voronoi split between the own point (col 5) and the swallowed one (col 25): the boundary is
    # col 15 (equidistant columns stay with the own point); nothing right of it survives
    expected = rect(shape, 0, 20, 0, 16)
    np.testing.assert_array_equal(kept, expected)
    assert sample_grid(choice.logits, rows, cols, shape)[1] < 0  # the other point is out


# 10 + 10 points: the running minimum; 150 + 150: the k-d trees
@pytest.mark.parametrize("n_rows", [10, 150])
def test_trim_is_the_voronoi_split_with_few_and_many_points(n_rows):
    shape = (n_rows, 40)
    # a column of own-class points at col 5, a column of other-class points at col 25
    rows = np.r_[np.arange(n_rows), np.arange(n_rows)]
    cols = np.r_[np.full(n_rows, 5), np.full(n_rows, 25)]
    labels = np.r_[np.ones(n_rows, int), np.full(n_rows, 2)]
    logits = np.where(rect(shape, 0, n_rows, 0, 40), 8.0, -8.0)[None]
    choice = choose_candidate(logits, np.array([0.9], np.float32), 0, rows, cols, labels, shape,
                              HybridOptions(min_iou=0.0))
    assert choice.index == 0 and choice.trimmed
    # equidistant col 15 stays with the own points, in both code paths
    np.testing.assert_array_equal(choice.logits > 0, rect(shape, 0, n_rows, 0, 16))


def test_block_bounds_of_the_trim_give_the_exact_nearest_point_split():
    rng = np.random.default_rng(7)
    for _ in range(60):
        h, w = rng.integers(5, 120, 2)
        m, n = (4 * h, 4 * w) if rng.random() < 0.5 else rng.integers(h, 4 * h + 50, 2)
        sy, sx = m / h, n / w
        on = rng.random((h, w)) < rng.uniform(0.05, 1.0)
        k = int(rng.integers(1, 30))
        # points on a lattice of step 4: many cell centres are equidistant (ties keep the cell)
        same = (rng.integers(0, m, k) // 4 * 4, rng.integers(0, n, k) // 4 * 4)
        other = (rng.integers(0, m, 12) // 4 * 4, rng.integers(0, n, 12) // 4 * 4)
        rr, cc = np.nonzero(on)
        yr, xc = (rr + 0.5) * sy - 0.5, (cc + 0.5) * sx - 0.5
        d_same = ((yr[:, None] - same[0]) ** 2 + (xc[:, None] - same[1]) ** 2).min(axis=1)
        d_other = ((yr[:, None] - other[0]) ** 2 + (xc[:, None] - other[1]) ** 2).min(axis=1)
        got = _nearer_to_other((h, w), (sy, sx), same, other, where=on)
        np.testing.assert_array_equal(got[rr, cc], d_other < d_same)


def test_negative_clicks_are_the_nearest_other_class_points():
    shape = (50, 50)
    coords = np.array([[10, 10], [10, 20], [40, 40], [30, 10], [10, 45]], float)
    labels = np.array([0, 1, 1, 0, 2])
    empty = (np.zeros((1, *shape), bool), [0.9])
    prop = FakeProposer(shape, {}, default=empty)
    run_generator(iter_hybrid_expand(np.zeros(shape, np.uint8), PointSet(coords, labels), prop,
                                     hybrid=HybridOptions(negatives=2)))
    negs = {pt: n for pt, n in prop.calls}
    np.testing.assert_array_equal(negs[(10, 10)], [[10, 20], [10, 45]])   # d=10, then 35
    np.testing.assert_array_equal(negs[(10, 20)], [[10, 10], [30, 10]])   # class 1: 0s first
    np.testing.assert_array_equal(negs[(10, 45)], [[10, 20], [40, 40]])  # d=25, then 30.4
    assert all(n.shape == (2, 2) for n in negs.values())
    assert prop.set_image_calls == 1  # one embedding per image


def test_conflict_votes_use_inverse_distance_of_nearest_competitors():
    shape = (60, 60)
    a = rect(shape, 20, 40, 0, 40)     # class 1
    b = rect(shape, 20, 40, 30, 60)    # class 2; overlap cols 30-39, centroid (29.5, 34.5)
    coords = np.array([[30, 5], [30, 55], [25, 58], [35, 58]], float)
    labels = np.array([1, 2, 2, 2])
    crops = [(1, 0.9, upsample_crop(np.where(a, 8.0, -8.0), shape)),
             (2, 0.8, upsample_crop(np.where(b, 8.0, -8.0), shape))]
    known, conf, info = resolve_conflicts(crops, coords, labels, shape, vote_neighbours=5)
    cy, cx = 29.5, 34.5
    w = 1 / (1 + np.hypot(coords[:, 0] - cy, coords[:, 1] - cx))
    vote1, vote2 = w[0], w[1:].sum()
    overlap = a & b
    assert info["conflict_groups"] == 1 and info["conflict_pixels"] == overlap.sum()
    assert np.all(known[overlap] == (1 if vote1 > vote2 else 2)) and vote2 > vote1
    np.testing.assert_allclose(conf[overlap], 0.9 * vote2 / (vote1 + vote2), rtol=1e-6)
    assert np.all(known[a & ~b] == 1) and np.all(known[b & ~a] == 2)
    assert np.all(known[~(a | b)] == -1)
    # with 1 nearest neighbour only, the single closest point decides
    known1, _, _ = resolve_conflicts(crops, coords, labels, shape, vote_neighbours=1)
    nearest = np.argmin(np.hypot(coords[:, 0] - cy, coords[:, 1] - cx))
    assert np.all(known1[overlap] == labels[nearest])


def test_conflict_point_inside_overlap_decides():
    shape = (40, 40)
    a = rect(shape, 0, 30, 0, 30)
    b = rect(shape, 10, 40, 10, 40)
    coords = np.array([[5, 5], [35, 35], [36, 36], [37, 37], [12, 12]], float)
    labels = np.array([1, 2, 2, 2, 1])  # the last class-1 point lies in the overlap
    crops = [(1, 1.0, upsample_crop(np.where(a, 8.0, -8.0), shape)),
             (2, 1.0, upsample_crop(np.where(b, 8.0, -8.0), shape))]
    known, conf, _ = resolve_conflicts(crops, coords, labels, shape)
    assert np.all(known[a & b] == 1)
    np.testing.assert_allclose(conf[a & b], 1.0)


def test_hybrid_fill_is_maskslic_expansion_of_the_uncovered_pixels(shared_data):
    from skimage import io

    image = io.imread(next(iter(sorted((shared_data / "aerial_dubai" / "images").iterdir()))))
    image = image[:160, :200]
    shape = image.shape[:2]
    coords = np.array([[20, 30], [120, 40], [60, 150], [140, 170]], float)
    labels = np.array([3, 1, 2, 1])
    m0 = rect(shape, 5, 50, 10, 80)      # class 3
    m2 = rect(shape, 40, 90, 120, 190)   # class 2
    masks = {(20, 30): (m0[None], [0.9]), (60, 150): (m2[None], [0.7])}
    nothing = (np.zeros((1, *shape), bool), [0.9])
    prop = FakeProposer(shape, masks, default=nothing)
    events = []
    res = run_generator(iter_hybrid_expand(image, PointSet(coords, labels), prop), events.append)
    known = np.full(shape, -1, np.int32)
    known[m0] = 3
    known[m2] = 2
    ref = run_generator(iter_expand(image, PointSet(coords, labels), known=known))
    np.testing.assert_array_equal(res.labels, ref.labels)
    assert np.all(res.labels[m0] == 3) and np.all(res.labels[m2] == 2)
    np.testing.assert_allclose(res.confidence[m0], 0.9)
    np.testing.assert_allclose(res.confidence[m2], 0.7)
    free = known < 0
    np.testing.assert_array_equal(res.confidence[free], ref.confidence[free])
    assert res.labels.dtype == np.uint8 and res.confidence.dtype == np.float32
    assert res.info["masks"]["accepted"] == 2 and res.info["masks"]["misses_point"] == 2
    assert res.info["covered_fraction"] == pytest.approx((m0 | m2).mean())
    assert set(res.info["timings"]) >= {"embedding", "decoding", "conflicts", "fill"}
    steps = [e.step for e in events]
    assert all(isinstance(e, Progress) for e in events)
    assert steps == sorted(steps) and events[-1].step == events[-1].total


def test_points_keep_their_class_and_bad_input_is_refused():
    shape = (30, 30)
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    everything = (np.ones((1, *shape), bool), [0.99])
    coords = np.array([[5, 5], [25, 25]], float)
    prop = FakeProposer(shape, {}, default=everything)
    # each whole-image mask swallows the other point (share 1/2) and gets trimmed to its half
    res = run_generator(iter_hybrid_expand(image, PointSet(coords, [1, 4]), prop))
    assert res.labels[5, 5] == 1 and res.labels[25, 25] == 4
    assert res.info["masks"]["trimmed"] == 2
    with pytest.raises(ValueError, match="no labelled points"):
        run_generator(iter_hybrid_expand(image, PointSet.empty(), prop))
    with pytest.raises(PointsOutOfBoundsError, match="outside the image"):
        run_generator(iter_hybrid_expand(image, PointSet([[40, 3]], [1]), prop))


@pytest.mark.parametrize("grid, out", [((8, 8), (37, 53)), ((256, 256), (600, 333)),
                                       ((16, 16), (16, 16))])
def test_upsample_crop_matches_pixel_area_bilinear(grid, out):
    rng = np.random.default_rng(1)
    logits = ndi.gaussian_filter(rng.normal(size=grid), 1.5).astype(np.float32) * 10 - 2
    zoom = (out[0] / grid[0], out[1] / grid[1])
    ref = ndi.zoom(logits.astype(np.float64), zoom, order=1, mode="nearest", grid_mode=True) > 0
    crop = upsample_crop(logits, out)
    full = np.zeros(out, bool)
    if crop is not None:
        full[crop.slices] = crop.mask
    assert ref.shape == out
    mismatch = (full != ref).mean()
    assert mismatch < 1e-4  # only rounding exactly at the threshold may differ
    rr, cc = np.nonzero(full)
    if rr.size:
        vals = sample_grid(logits, rr, cc, out)
        assert np.all(vals > 0)
    assert upsample_crop(np.full(grid, -1.0), out) is None


def test_batches_decode_in_order_and_closing_early_starts_no_more_batches():
    shape = (30, 30)
    image = np.zeros(shape + (3,), np.uint8)
    coords = np.array([[2 + 3 * k, 2 + 3 * k] for k in range(9)], float)
    points = PointSet(coords, [1] * 9)
    prop = FakeProposer(shape, {}, default=(np.stack([rect(shape, 0, 30, 0, 30)] * 3),
                                            np.ones(3, np.float32)))
    res = run_generator(iter_hybrid_expand(image, points, prop,
                                           hybrid=HybridOptions(batch_size=3)))
    assert [c[0] for c in prop.calls] == [(int(r), int(c)) for r, c in coords]
    assert res.info["masks"]["accepted"] == 9
    assert res.info["timings"]["decoding"] >= res.info["timings"]["decoding_choice"]
    # a consumer that stops after the first batch's progress (napari's Cancel closes it)
    prop = FakeProposer(shape, {}, default=prop.default)
    gen = iter_hybrid_expand(image, points, prop, hybrid=HybridOptions(batch_size=3))
    for ev in gen:
        if ev.message.startswith("masks for points 1-3"):
            break
    gen.close()
    assert len(prop.calls) <= 6  # the first batch, and at most the one decoded ahead
