"""The classic baselines the benchmark compares against."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sseg.core.baselines import (
    multilevel_slic_labels,
    nearest_point_labels,
    slic_segments,
    slic_vote_labels,
)
from napari_sseg.core.points import PointSet


def _two_halves(rgb: bool):
    rng = np.random.default_rng(0)
    img = np.full((120, 160), 60.0)
    img[:, 71:] = 190.0  # an edge off the superpixel grid
    img += rng.normal(0, 4, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=2) if rgb else img


@pytest.mark.parametrize("rgb", [False, True])
def test_slic_superpixels_follow_an_edge_in_grey_and_colour_images(rgb):
    seg = slic_segments(_two_halves(rgb), 60)
    left, right = seg[:, :71], seg[:, 71:]
    straddling = np.intersect1d(np.unique(left), np.unique(right))
    assert len(np.unique(seg)) > 20
    assert straddling.size == 0  # a near-square grid would cut across the edge


def test_baselines_label_every_pixel_from_the_points():
    img = _two_halves(False)
    points = PointSet([[60, 30], [60, 120]], [3, 7])
    for labels in (nearest_point_labels(img.shape, points),
                   slic_vote_labels(img, points, n_segments=60),
                   multilevel_slic_labels(img, points)):
        assert labels.shape == img.shape
        assert set(np.unique(labels)) == {3, 7}
        assert labels[60, 30] == 3 and labels[60, 120] == 7


def test_downsampled_slic_covers_the_image_and_respects_the_mask():
    from napari_sseg.core.image import normalized_float
    from napari_sseg.core.superpixels import colour_features, slic_superpixels

    feats = colour_features(normalized_float(_two_halves(True)))
    mask = np.ones(feats.shape[:2], dtype=bool)
    mask[:, :20] = False
    full = slic_superpixels(feats, n_segments=60)
    half = slic_superpixels(feats, n_segments=60, downsample=2, mask=mask)
    assert half.shape == full.shape
    assert np.all(half[:, :20] == 0) and np.all(half[:, 20:] > 0)
    # about as many superpixels as asked for, each one connected piece inside the mask
    ids = np.unique(half[half > 0])
    assert 30 <= ids.size <= 120
    from scipy import ndimage as ndi

    assert all(ndi.label(half == i)[1] == 1 for i in ids)
