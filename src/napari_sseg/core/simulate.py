"""Simulated annotation sessions: points from an oracle, expansion from those points only.

The ground truth is used for two things alone: the oracle's class at each chosen point, and the
set of annotated pixels (not ``ignore_index``) from which every strategy may pick, so that random,
grid and suggested points are drawn from the same pixels. Everything else the expansion sees is
the image and the points.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from .expand import ExpandOptions, Expansion
from .metrics import IGNORE, ConfusionMatrix
from .pipeline import iter_expand_image
from .points import PointSet
from .progress import Progress
from .sampling import oracle_labels, sample_points

__all__ = ["STRATEGIES", "CorrectionRounds", "iter_simulate", "iter_simulate_corrections",
           "iter_simulate_volume"]

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


@dataclass
class CorrectionRounds:
    """Outcome of :func:`iter_simulate_corrections` on one image.

    Attributes
    ----------
    refined, manual : list of (K, K) ndarray of int64
        Confusion matrix (rows ground truth, columns prediction, ``ignore_index`` skipped) of
        each arm after every round; entry 0 is the expansion from the points alone, shared by
        both arms.
    kept : list of float
        Share of the refined arm's painted pixels that kept their class, per round (entry 0:
        1.0, nothing painted yet).
    discs : dict of str to list of DiscCorrection
        The corrections each arm received, in order.
    refined_labels, manual_labels : (M, N) ndarray
        Masks after the last round.
    corrections : (M, N) ndarray
        The refined arm's corrections image after the last round.
    seconds : dict of str to list of float
        ``expand``: seconds of every expansion of the refined arm (entry 0: from the points).
    """

    refined: list
    manual: list
    kept: list
    discs: dict
    refined_labels: np.ndarray
    manual_labels: np.ndarray
    corrections: np.ndarray
    seconds: dict = field(default_factory=dict)


def iter_simulate_corrections(
    image: np.ndarray,
    ground_truth: np.ndarray,
    points: PointSet,
    rounds: int,
    *,
    radius: float = 8.0,
    first: Expansion | None = None,
    proposer=None,
    options: ExpandOptions | None = None,
    ignore_index: int = IGNORE,
) -> Generator[Progress, None, CorrectionRounds]:
    """Simulate ``rounds`` rounds of corrections after an expansion from ``points``.

    In every round the oracle (:func:`~napari_sseg.core.corrections.oracle_disc`) paints a
    disc of ``radius`` pixels with the true class at the innermost pixel of the largest wrong
    region of each arm's current mask. Two arms follow their own errors:

    * *refined*: all its corrections so far are given to a new expansion of the same points
      (painted pixels keep their class and act as evidence);
    * *manual*: the disc is painted into the previous mask, nothing else changes.

    Parameters
    ----------
    image : (M, N[, C]) ndarray
    ground_truth : (M, N) ndarray of int
        Only the oracle reads it (and the scores).
    points : PointSet
    rounds : int
        Correction rounds (0: just the first expansion).
    radius : float
        Disc radius in pixels.
    first : Expansion, optional
        The expansion from ``points`` alone when already computed.
    proposer : MaskProposer, optional
    options : ExpandOptions, optional
    ignore_index : int

    Returns
    -------
    CorrectionRounds
    """
    import time

    from .corrections import empty_corrections, kept_fraction, oracle_disc, paint_disc

    gt = np.asarray(ground_truth)
    if gt.shape != np.asarray(image).shape[:2]:
        raise ValueError(f"ground truth of shape {gt.shape} does not match the image of shape "
                         f"{np.asarray(image).shape[:2]}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")

    def confusion(labels):
        cm = ConfusionMatrix(ignore_index=ignore_index)
        cm.update(gt, labels)
        return cm.matrix.copy()

    seconds = []
    if first is None:
        yield Progress(0, rounds + 1, "expanding the points")
        t0 = time.perf_counter()
        first = yield from iter_expand_image(image, points, proposer=proposer, options=options)
        seconds.append(time.perf_counter() - t0)
    max_id = int(max(gt[gt != ignore_index].max(initial=0), first.labels.max()))
    corr = empty_corrections(gt.shape, max_id)
    refined = first.labels
    manual = first.labels
    out = CorrectionRounds([confusion(refined)], [confusion(manual)], [1.0],
                           {"refined": [], "manual": []}, refined, manual, corr)
    for k in range(rounds):
        yield Progress(k + 1, rounds + 1, f"correction round {k + 1}/{rounds}")
        disc = oracle_disc(manual, gt, radius=radius, ignore_index=ignore_index)
        if disc is not None:
            manual = paint_disc(manual, disc.center, radius, disc.label)
            out.discs["manual"].append(disc)
        disc = oracle_disc(refined, gt, radius=radius, ignore_index=ignore_index)
        if disc is not None:
            corr = paint_disc(corr, disc.center, radius, disc.label)
            out.discs["refined"].append(disc)
            t0 = time.perf_counter()
            refined = (yield from iter_expand_image(image, points, proposer=proposer,
                                                    corrections=corr, options=options)).labels
            seconds.append(time.perf_counter() - t0)
        out.refined.append(confusion(refined))
        out.manual.append(confusion(manual))
        out.kept.append(kept_fraction(refined, corr))
    out.refined_labels, out.manual_labels, out.corrections = refined, manual, corr
    out.seconds["expand"] = seconds
    return out


def iter_simulate_volume(
    volume: np.ndarray,
    ground_truth: np.ndarray,
    points_per_plane: int,
    *,
    every: int = 1,
    seed: int = 0,
    spacing=(1.0, 1.0, 1.0),
    options=None,
    ignore_index: int = IGNORE,
):
    """Simulate a user who labels random points on every ``every``-th plane of a stack.

    Parameters
    ----------
    volume : (Z, M, N[, C]) ndarray
    ground_truth : (Z, M, N) ndarray of int
        Class-index stack; ``ignore_index`` marks voxels never picked.
    points_per_plane : int
        Random points on each labelled plane (planes 0, every, 2 * every, ...).
    every, seed, spacing, options
        Spacing of labelled planes, sampling seed, voxel spacing and
        :class:`~napari_sseg.core.volume.VolumeOptions` of the volume expansion.

    Yields
    ------
    Progress

    Returns
    -------
    points : PointSet
        The points placed (with planes), with their oracle labels.
    expansion : Expansion
        The volume expansion; score planes with and without points separately.
    """
    from .volume import iter_expand_volume

    gt = np.asarray(ground_truth)
    vol = np.asarray(volume)
    if gt.ndim != 3 or gt.shape != vol.shape[:3]:
        raise ValueError(f"ground truth of shape {gt.shape} does not match the stack of shape "
                         f"{vol.shape[:3]}")
    if points_per_plane < 1 or every < 1:
        raise ValueError(f"points per plane and plane spacing must be at least 1, got "
                         f"{points_per_plane} and {every}")
    rng = np.random.default_rng(seed)
    coords, labels, planes = [], [], []
    for z in range(0, gt.shape[0], every):
        ps = sample_points(gt[z], points_per_plane, rng=rng, ignore_index=ignore_index)
        coords.append(ps.coords)
        labels.append(ps.labels)
        planes.append(np.full(len(ps), z))
    points = PointSet(np.concatenate(coords), np.concatenate(labels),
                      planes=np.concatenate(planes))
    if not len(points):
        raise ValueError("the ground truth has no annotated voxel on the labelled planes")
    expansion = yield from iter_expand_volume(vol, points, spacing=spacing, options=options)
    return points, expansion
