"""Region hierarchy: nesting, counts, determinism, bad input, and quality on real images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sseg.core.regions import (
    achievable_accuracy,
    boundary_recall,
    cut,
    n_regions_at_level,
    region_hierarchy,
)


def quadrants(shape=(60, 80), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """RGB image of four differently coloured quadrants with noise, and its quadrant ids."""
    rng = np.random.default_rng(seed)
    m, n = shape
    truth = np.zeros(shape, dtype=np.int64)
    truth[: m // 2, n // 2:] = 1
    truth[m // 2:, : n // 2] = 2
    truth[m // 2:, n // 2:] = 3
    colours = np.array([[200, 40, 40], [40, 180, 40], [40, 40, 200], [220, 220, 60]], float)
    img = colours[truth] + rng.normal(0, 8, shape + (3,))
    return np.clip(img, 0, 255).astype(np.uint8), truth


@pytest.fixture(scope="module")
def quad_hierarchy():
    img, truth = quadrants()
    return region_hierarchy(img, n_fine=300), truth


def test_counts_are_exact_and_ids_consecutive(quad_hierarchy):
    h, _ = quad_hierarchy
    for k in (2, 4, 17, 100, h.n_fine):
        lab = cut(h, n_regions=k)
        assert lab.dtype == np.int32 and lab.shape == (60, 80)
        np.testing.assert_array_equal(np.unique(lab), np.arange(1, k + 1))


def test_cuts_are_nested(quad_hierarchy):
    h, _ = quad_hierarchy
    cuts = [cut(h, n_regions=k) for k in (150, 40, 9, 3)]
    for fine, coarse in zip(cuts[:-1], cuts[1:]):
        # every region of the finer cut lies in exactly one region of the coarser cut
        pairs = np.unique(np.stack([fine.ravel(), coarse.ravel()]), axis=1)
        assert pairs.shape[1] == np.unique(fine).size


def test_four_regions_are_the_quadrants(quad_hierarchy):
    h, truth = quad_hierarchy
    lab = cut(h, n_regions=4)
    assert achievable_accuracy(lab, truth) > 0.99
    # each quadrant is mostly one region of its own
    majority = [np.bincount(lab[truth == q]).argmax() for q in range(4)]
    assert len(set(majority)) == 4


def test_deterministic():
    img, _ = quadrants(seed=3)
    a = region_hierarchy(img, n_fine=200)
    b = region_hierarchy(img.copy(), n_fine=200)
    np.testing.assert_array_equal(a.parents, b.parents)
    np.testing.assert_array_equal(cut(a, n_regions=30), cut(b, n_regions=30))


def test_does_not_mutate_input():
    img, _ = quadrants()
    before = img.copy()
    region_hierarchy(img, n_fine=100)
    np.testing.assert_array_equal(img, before)


def test_level_runs_fine_to_coarse(quad_hierarchy):
    h, _ = quad_hierarchy
    assert n_regions_at_level(h, 0.0) == h.n_fine
    assert n_regions_at_level(h, 1.0) == 1
    counts = [np.unique(cut(h, level=v)).size for v in (0.0, 0.3, 0.6, 0.9)]
    assert counts == sorted(counts, reverse=True) and counts[0] == h.n_fine


def test_working_resolution_is_brought_back_to_full_size():
    img, truth = quadrants((120, 160))
    h = region_hierarchy(img, n_fine=200, max_work_pixels=120 * 160 // 9 + 10)
    assert h.factor == 3 and h.fine.shape == (40, 54)
    lab = cut(h, n_regions=4)
    assert lab.shape == (120, 160)
    # blocks of 3 x 3 straddle the quadrants' border at column 80: at most 1 - 40/(3 * 160) lost
    assert achievable_accuracy(lab, truth) > 0.96
    np.testing.assert_array_equal(np.unique(cut(h, n_regions=25)), np.arange(1, 26))


@pytest.mark.parametrize("channels", [None, 2, 5])
def test_grey_and_multichannel(channels):
    img, truth = quadrants()
    grey = img.mean(axis=2)
    data = grey if channels is None else np.stack([grey * (i + 1) for i in range(channels)], -1)
    h = region_hierarchy(data.astype(np.float32), n_fine=150)
    lab = cut(h, n_regions=10)
    assert np.unique(lab).size == 10


def test_constant_and_nan_images_give_sensible_cuts():
    const = np.full((40, 50), 7.0)
    h = region_hierarchy(const, n_fine=60)
    assert np.unique(cut(h, n_regions=10)).size == 10
    img, truth = quadrants()
    f = img.astype(np.float32)
    f[5:9, 5:9] = np.nan
    h = region_hierarchy(f, n_fine=200)
    lab = cut(h, n_regions=4)
    assert np.unique(lab).size == 4 and achievable_accuracy(lab, truth) > 0.95


def test_bad_input_is_a_clear_error(quad_hierarchy):
    h, _ = quad_hierarchy
    with pytest.raises(ValueError, match="at least 2"):
        cut(h, n_regions=1)
    with pytest.raises(ValueError, match="exceeds the image's 4800 pixels"):
        cut(h, n_regions=4801)
    with pytest.raises(ValueError, match="exactly one"):
        cut(h)
    with pytest.raises(ValueError, match="exactly one"):
        cut(h, n_regions=3, level=0.5)
    with pytest.raises(ValueError, match="level must be between"):
        cut(h, level=1.5)
    with pytest.raises(ValueError, match="whole number"):
        cut(h, n_regions=2.5)
    with pytest.raises(ValueError, match="too small"):
        region_hierarchy(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="expected a 2D image"):
        region_hierarchy(np.zeros((4, 5, 6, 3)))


def test_more_regions_than_fine_ones_gives_the_finest(quad_hierarchy):
    h, _ = quad_hierarchy
    lab = cut(h, n_regions=h.n_fine + 50)
    assert np.unique(lab).size == h.n_fine


def test_metrics_on_hand_made_arrays():
    regions = np.array([[1, 1, 2, 2],
                        [1, 1, 2, 2]])
    truth = np.array([[0, 0, 0, 1],
                      [0, 255, 1, 1]])
    # region 1: three 0s (one pixel ignored); region 2: one 0, three 1s
    assert achievable_accuracy(regions, truth) == pytest.approx(6 / 7)
    assert achievable_accuracy(regions, np.full((2, 4), 255)) != achievable_accuracy(regions, truth)
    truth2 = np.array([[0, 0, 1, 1],
                       [0, 0, 1, 1]])
    assert boundary_recall(regions, truth2, tolerance=0) == 1.0
    shifted = np.array([[1, 2, 2, 2],
                        [1, 2, 2, 2]])
    assert boundary_recall(shifted, truth2, tolerance=0) == 0.0
    assert boundary_recall(shifted, truth2, tolerance=1) == 1.0


def test_beats_slic_on_a_real_tile(shared_data):
    """On a real aerial tile a cut reaches at least the ASA of SLIC with as many regions."""
    from skimage.segmentation import slic

    from napari_sseg.io import read_image, read_label_image

    name = "tile3_image_part_003"
    img = read_image(shared_data / "aerial_dubai" / "images" / f"{name}.jpg")[::2, ::2]
    truth = read_label_image(shared_data / "aerial_dubai" / "masks" / f"{name}.png")[::2, ::2]
    ref = slic(img, n_segments=200, compactness=10, start_label=1)
    k = np.unique(ref).size
    assert 100 < k < 250
    ours = achievable_accuracy(cut(region_hierarchy(img), n_regions=k), truth)
    assert ours >= achievable_accuracy(ref, truth)


def test_local_coarser_and_finer_steps(quad_hierarchy):
    from napari_sseg.core.regions import coarser_at, cut_nodes, finer_at, labels_from_nodes

    h, _ = quad_hierarchy
    nodes = cut_nodes(h, 20)
    base = labels_from_nodes(h, nodes)
    np.testing.assert_array_equal(base, cut(h, n_regions=20))
    fid = h.fine_at(10, 10)
    up = coarser_at(h, nodes, fid)
    merged = labels_from_nodes(h, up)
    # one step coarser at (10, 10): the region there grows, the others that stay are unchanged
    region = base == base[10, 10]
    assert (merged[region] == merged[10, 10]).all()
    assert (merged == merged[10, 10]).sum() > region.sum()
    assert np.unique(merged).size < 20
    # and one step finer again gives back the region at (10, 10)
    again = labels_from_nodes(h, finer_at(h, up, fid))
    np.testing.assert_array_equal(again == again[10, 10], region)
    # finer at a region splits it in two, leaving the rest
    down = labels_from_nodes(h, finer_at(h, nodes, fid))
    assert np.unique(down).size == 21
    assert np.unique(down[region]).size == 2 and (down[~region] != 0).all()
    # every fine region is under exactly the nodes the tree says
    assert sorted(np.concatenate([h.leaves(v) for v in np.unique(nodes)])) == list(range(h.n_fine))
