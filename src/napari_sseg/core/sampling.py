"""Simulated annotators: draw points from annotated ground-truth pixels (the oracle)."""

from __future__ import annotations

import numpy as np

from .metrics import IGNORE
from .points import PointSet

__all__ = ["sample_points", "oracle_labels"]


def oracle_labels(ground_truth: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Class of the ground truth at each (row, col); the only thing the oracle reveals."""
    rc = np.floor(np.asarray(coords, dtype=np.float64) + 0.5).astype(np.int64).reshape(-1, 2)
    return np.asarray(ground_truth)[rc[:, 0], rc[:, 1]].astype(np.int64)


def sample_points(
    ground_truth: np.ndarray,
    n_points: int,
    *,
    strategy: str = "random",
    rng: np.random.Generator | int | None = None,
    ignore_index: int = IGNORE,
) -> PointSet:
    """Sample ``n_points`` annotated pixels and label them from the ground truth.

    Parameters
    ----------
    ground_truth : (M, N) ndarray of int
        Class-index mask; ``ignore_index`` marks pixels that are never sampled.
    n_points : int
        Number of points (fewer if fewer pixels are annotated).
    strategy : {'random', 'grid'}
        Uniform random annotated pixels, or the annotated pixel nearest to each node of a
        regular grid of about ``n_points`` cells (with a random offset per seed).
    rng : numpy Generator or int, optional
    ignore_index : int

    Returns
    -------
    PointSet
    """
    gt = np.asarray(ground_truth)
    if gt.ndim != 2:
        raise ValueError(f"ground truth must be 2D, got shape {gt.shape}")
    rng = np.random.default_rng(rng)
    valid = gt != ignore_index
    flat = np.flatnonzero(valid)
    if flat.size == 0 or n_points <= 0:
        return PointSet.empty()
    n_points = min(int(n_points), flat.size)
    if strategy == "random":
        pick = rng.choice(flat, size=n_points, replace=False)
        coords = np.stack(np.unravel_index(pick, gt.shape), axis=1).astype(np.float64)
    elif strategy == "grid":
        coords = _grid_coords(valid, n_points, rng)
    else:
        raise ValueError(f"unknown sampling strategy {strategy!r}; expected 'random' or 'grid'")
    return PointSet(coords, oracle_labels(gt, coords))


def _grid_coords(valid: np.ndarray, n_points: int, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage as ndi

    m, n = valid.shape
    rows_n = max(1, int(round(np.sqrt(n_points * m / n))))
    cols_n = max(1, int(np.ceil(n_points / rows_n)))
    off = rng.uniform(0.25, 0.75, size=2)
    r = ((np.arange(rows_n) + off[0]) * m / rows_n).astype(np.int64)
    c = ((np.arange(cols_n) + off[1]) * n / cols_n).astype(np.int64)
    rr, cc = np.meshgrid(np.clip(r, 0, m - 1), np.clip(c, 0, n - 1), indexing="ij")
    coords = np.stack([rr.ravel(), cc.ravel()], axis=1)
    if len(coords) > n_points:
        coords = coords[np.sort(rng.choice(len(coords), size=n_points, replace=False))]
    if not valid.all():
        # move each grid node onto the nearest annotated pixel
        _, (ir, ic) = ndi.distance_transform_edt(~valid, return_indices=True)
        coords = np.stack([ir[coords[:, 0], coords[:, 1]], ic[coords[:, 0], coords[:, 1]]], axis=1)
        coords = np.unique(coords, axis=0)
    return coords.astype(np.float64)
