"""Classic point-to-dense baselines, run on the same points as the main expansion.

Nearest labelled point (Voronoi), single-scale SLIC vote, and multi-level SLIC (coarse to fine,
after CoralSeg, Alonso et al. 2019). Superpixels with no point fall back to the nearest point.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import slic

from .image import normalized_float
from .points import PointSet

__all__ = [
    "nearest_point_labels",
    "slic_segments",
    "slic_vote_labels",
    "multilevel_slic_labels",
    "MULTILEVEL_LEVELS",
    "BASELINES",
]

MULTILEVEL_LEVELS = (100, 300, 1000, 3000)


def nearest_point_labels(shape: tuple[int, int], points: PointSet) -> np.ndarray:
    """Each pixel takes the class of the nearest labelled point (a Voronoi partition)."""
    rows, cols = points.pixel_indices()
    seeds = np.ones(shape, dtype=bool)
    seeds[rows, cols] = False
    lab = np.zeros(shape, dtype=np.int64)
    lab[rows, cols] = points.labels
    _, (ir, ic) = ndi.distance_transform_edt(seeds, return_indices=True)
    return lab[ir, ic]


def _vote(seg: np.ndarray, points: PointSet) -> tuple[np.ndarray, np.ndarray]:
    """Majority class of the points in each superpixel; (class per id, has-points per id)."""
    rows, cols = points.pixel_indices()
    ids = seg[rows, cols]
    classes = np.unique(points.labels)
    ci = np.searchsorted(classes, points.labels)
    votes = np.zeros((int(seg.max()) + 1, classes.size))
    np.add.at(votes, (ids, ci), 1)
    return classes[votes.argmax(axis=1)], votes.sum(axis=1) > 0


def slic_segments(image: np.ndarray, n_segments: int) -> np.ndarray:
    """Plain full-resolution SLIC (CIELAB for RGB, compactness 10) as the baselines use it.

    Depends on the image only, so a benchmark can compute it once and reuse it for every
    point set.
    """
    img = normalized_float(image)
    rgb = img.shape[2] == 3
    # skimage rescales the image to [0, 1] before segmenting; CIELAB then spans about 0-100,
    # other channels 0-1, so compactness 10 on the CIELAB scale is 0.1 on theirs
    return slic(img, n_segments=n_segments, compactness=10 if rgb else 0.1,
                channel_axis=-1, convert2lab=rgb, start_label=0)


def slic_vote_labels(
    image: np.ndarray,
    points: PointSet,
    *,
    n_segments: int = 1000,
    segments: np.ndarray | None = None,
) -> np.ndarray:
    """Single-scale SLIC: a superpixel takes its points' majority class, else the nearest point's.

    ``segments`` may hold a precomputed :func:`slic_segments` result.
    """
    seg = slic_segments(image, n_segments) if segments is None else segments
    cls, has = _vote(seg, points)
    out = nearest_point_labels(seg.shape, points)
    sel = has[seg]
    out[sel] = cls[seg][sel]
    return out


def multilevel_slic_labels(
    image: np.ndarray,
    points: PointSet,
    *,
    levels: tuple[int, ...] = MULTILEVEL_LEVELS,
    segments: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Multi-level SLIC, coarse to fine: finer superpixels with points overwrite coarser labels.

    ``segments`` may hold precomputed :func:`slic_segments` results for ``sorted(levels)``.
    """
    out = nearest_point_labels(np.asarray(image).shape[:2], points)
    if segments is None:
        segments = [slic_segments(image, n) for n in sorted(levels)]
    for seg in segments:
        cls, has = _vote(seg, points)
        sel = has[seg]
        out[sel] = cls[seg][sel]
    return out


BASELINES = {
    "nearest": lambda image, points: nearest_point_labels(np.asarray(image).shape[:2], points),
    "slic_vote": slic_vote_labels,
    "multilevel_slic": multilevel_slic_labels,
}
