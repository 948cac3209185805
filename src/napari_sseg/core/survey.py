"""A survey model's class probabilities as a third expert of the expansion (pure numpy).

The expansion (:mod:`napari_sseg.core.expand`) may receive ``prior_proba``, the class
probabilities a survey model predicts for the image (any grid that covers the image, e.g. the
model's working grid), with the class ids of its last axis. The prior is restricted to the
points' classes and renormalised, sampled on the expansion's grid, and joined to the
expansion's posterior as a weighted product ``p_expansion^a * prior^b``. The weights are chosen
per image by the same cross-validation over the points that chooses the other experts' weights:
each point is predicted by the expansion fitted without its fold, combined with the prior at
that point, and the combination with the best held-out mIoU wins (ties: the earlier one, so the
expansion alone is kept unless the prior helps). A few points thus correct the survey model, and
the survey model fills what the points do not reach.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .classaxis import softmax_inplace

__all__ = ["PRIOR_WEIGHTS", "check_prior", "prior_on_grid", "choose_prior_weights",
           "combine_prior"]

#: Candidate (expansion weight, prior weight) pairs, in order of preference on ties.
PRIOR_WEIGHTS: tuple[tuple[float, float], ...] = (
    (1.0, 0.0), (1.0, 0.5), (1.0, 1.0), (1.0, 2.0), (0.5, 1.0), (0.0, 1.0))
_FLOOR = 1e-4


def check_prior(prior_proba: np.ndarray, prior_classes, classes: np.ndarray) -> np.ndarray:
    """Column of ``prior_proba`` for each class of ``classes``.

    Raises
    ------
    ValueError
        If ``prior_proba`` is not (P, Q, K) with K class ids in ``prior_classes``, or a class
        of ``classes`` is not among them.
    """
    prior = np.asarray(prior_proba)
    ids = np.asarray(prior_classes, dtype=np.int64).ravel()
    if prior.ndim != 3 or prior.shape[2] != ids.size:
        raise ValueError(f"prior_proba of shape {prior.shape} does not match its "
                         f"{ids.size} class ids; expected (rows, cols, classes)")
    missing = sorted(set(classes.tolist()) - set(ids.tolist()))
    if missing:
        raise ValueError(f"class id(s) {missing} of the points are not among the survey "
                         f"model's classes {ids.tolist()}")
    return np.array([int(np.flatnonzero(ids == c)[0]) for c in classes], dtype=np.int64)


def prior_on_grid(
    prior_proba: np.ndarray,
    columns: np.ndarray,
    grid_shape: tuple[int, int],
    cell: int,
    full_shape: tuple[int, int],
) -> np.ndarray:
    """Log-probabilities of the prior's ``columns`` on a grid of ``cell``-pixel cells.

    The prior covers the full image of ``full_shape``; each grid cell takes the prior at its
    centre (nearest prior pixel), restricted to ``columns`` and renormalised.

    Returns
    -------
    (h, w, K) ndarray of float32
    """
    p, q = prior_proba.shape[:2]
    m, n = full_shape
    h, w = grid_shape
    rr = np.minimum(((np.arange(h) + 0.5) * cell * p / m).astype(np.int64), p - 1)
    cc = np.minimum(((np.arange(w) + 0.5) * cell * q / n).astype(np.int64), q - 1)
    sub = np.asarray(prior_proba, dtype=np.float32)[rr[:, None], cc[None, :]][..., columns]
    sub = np.maximum(sub, _FLOOR)
    sub /= sub.sum(axis=2, keepdims=True)
    return np.log(sub)


def choose_prior_weights(
    held_proba: np.ndarray,
    prior_logp: np.ndarray,
    ci: np.ndarray,
    key: Callable[[np.ndarray, np.ndarray], tuple],
) -> tuple[tuple[float, float], list]:
    """Best (expansion, prior) weights for the held-out points.

    Parameters
    ----------
    held_proba : (n, K) ndarray
        The expansion's held-out posterior at each point (fitted without its fold).
    prior_logp : (n, K) ndarray
        The prior's log-probabilities at the points.
    ci : (n,) ndarray of int
        The points' class indices.
    key : callable
        ``key(log_scores, ci)``: a sortable held-out score (larger is better).

    Returns
    -------
    weights : (float, float)
    scored : list of (key, weights)
    """
    logp = np.log(np.maximum(held_proba, 1e-10))
    scored = []
    for a, b in PRIOR_WEIGHTS:
        z = (a * logp + b * prior_logp).astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
        scored.append((key(z, ci), (a, b)))
    best = max(scored, key=lambda t: t[0])  # max keeps the first of equal keys
    return best[1], scored


def combine_prior(pmap: np.ndarray, prior_logp: np.ndarray, weights: tuple[float, float]) -> np.ndarray:
    """``softmax(a log pmap + b log prior)`` over the class axis (a new float32 array)."""
    a, b = weights
    if b == 0:
        return pmap
    z = np.float32(a) * np.log(np.maximum(pmap, 1e-10), dtype=np.float32)
    z += np.float32(b) * prior_logp
    return softmax_inplace(z)
