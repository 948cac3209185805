"""Simulated annotation sessions: points from an oracle, expansion from those points only.

The ground truth is used for two things alone: the oracle's class at each chosen point, and the
set of annotated pixels (not ``ignore_index``) from which every strategy may pick, so that random,
grid and suggested points are drawn from the same pixels. Everything else the expansion sees is
the image and the points.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from .expand import ExpandOptions, Expansion
from .metrics import IGNORE
from .pipeline import iter_expand_image
from .points import PointSet
from .progress import Progress
from .sampling import oracle_labels, sample_points

__all__ = ["STRATEGIES", "iter_simulate"]

STRATEGIES = ("random", "grid", "suggest")


def iter_simulate(
    image: np.ndarray,
    ground_truth: np.ndarray,
    n_points: int,
    *,
    strategy: str = "random",
    seed: int = 0,
    batch_size: int = 5,
    proposer=None,
    options: ExpandOptions | None = None,
    ignore_index: int = IGNORE,
) -> Generator[Progress, None, tuple[PointSet, Expansion]]:
    """Simulate one user labelling ``n_points`` points on one image, then expand them.

    Parameters
    ----------
    image : (M, N[, C]) ndarray
    ground_truth : (M, N) ndarray of int
        Class-index mask; ``ignore_index`` marks pixels never picked.
    n_points : int
        Points to place (fewer when fewer pixels are annotated or suggestions run out).
    strategy : {'random', 'grid', 'suggest'}
        'random' / 'grid': :func:`~napari_sseg.core.sampling.sample_points`. 'suggest': start
        with no points, ask :func:`~napari_sseg.core.suggest.suggest_points` for ``batch_size``
        points at a time, label them with the oracle, expand, and repeat until ``n_points``.
    seed : int
        Seed of the sampling (and of the suggestions).
    batch_size : int
        Suggestions per round (strategy 'suggest').
    proposer : MaskProposer, optional
        Mask proposer for the expansion (``None``: weight-free superpixel expansion).
    options : ExpandOptions, optional
    ignore_index : int

    Yields
    ------
    Progress

    Returns
    -------
    points : PointSet
        The points placed, with their oracle labels.
    expansion : Expansion
        The expansion of those points.

    Raises
    ------
    ValueError
        If the ground truth and image shapes differ, the strategy is unknown or no pixel is
        annotated.
    """
    gt = np.asarray(ground_truth)
    shape = np.asarray(image).shape[:2]
    if gt.ndim != 2 or gt.shape != shape:
        raise ValueError(
            f"ground truth of shape {gt.shape} does not match the image of shape {shape}"
        )
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if n_points < 1:
        raise ValueError(f"n_points must be at least 1, got {n_points}")
    unannotated = gt == ignore_index
    if unannotated.all():
        raise ValueError("the ground truth has no annotated pixel to place a point on")

    if strategy in ("random", "grid"):
        yield Progress(0, 1, f"{strategy} points")
        points = sample_points(gt, n_points, strategy=strategy, rng=np.random.default_rng(seed),
                               ignore_index=ignore_index)
        expansion = yield from iter_expand_image(image, points, proposer=proposer,
                                                 options=options)
        return points, expansion

    from .suggest import suggest_points

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rounds = -(-n_points // batch_size)
    points = PointSet.empty()
    expansion: Expansion | None = None
    for k in range(rounds):
        want = min(batch_size, n_points - len(points))
        if want <= 0:
            break
        yield Progress(k, rounds, f"suggesting points {len(points)}/{n_points}")
        new = np.asarray(
            suggest_points(image, points, expansion, want, ignore_mask=unannotated,
                           seed=seed * 1000 + k),
            dtype=np.float64,
        ).reshape(-1, 2)
        if new.size:
            rc = np.floor(new + 0.5).astype(np.int64)
            inside = ((rc >= 0) & (rc < np.asarray(shape))).all(axis=1)
            new, rc = new[inside], rc[inside]
            new = new[~unannotated[rc[:, 0], rc[:, 1]]]
        if not len(new):
            break
        points = points.appended(new, oracle_labels(gt, new))
        expansion = yield from iter_expand_image(image, points, proposer=proposer,
                                                 options=options)
    if expansion is None:
        raise ValueError("the suggestions gave no point on an annotated pixel")
    return points, expansion
