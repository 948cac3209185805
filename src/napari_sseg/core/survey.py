"""A survey model's class probabilities as a third expert of the expansion (pure numpy).

The expansion (:mod:`napari_sseg.core.expand`) may receive ``prior_proba``, the class
probabilities a survey model predicts for the image (any grid that covers the image, e.g. the
model's working grid), with the class ids of its last axis. The prior is restricted to the
points' classes and renormalised, and sampled on the expansion's grid.

The two are joined as a product recalibrated on the image's own points:

``p ∝ exp(r log p̃_expansion + b log q̃_prior + c)``

where ``p̃`` and ``q̃`` are the expansion's posterior and the prior mixed with a uniform share
(:data:`EXPANSION_FLOOR`, :data:`PRIOR_FLOOR`: one confident mistake of either cannot veto the
other), ``r`` is the expansion's fixed weight (:data:`EXPANSION_WEIGHT`), and the prior's
weight ``b`` and the per-class biases ``c`` are fitted per image to the points by penalised
maximum likelihood (ridges :data:`WEIGHT_PENALTY` towards ``b = 1`` and :data:`BIAS_PENALTY`
towards ``c = 0``). The fit uses the expansion's *held-out* posterior at each point (predicted
by the expansion fitted without the point's fold, the same folds that choose the other experts'
weights), so it learns how far the model can be trusted on this image: ``b`` grows where the
model predicts the points better than the expansion (EM membranes) and shrinks towards 0 where
it does not (a model that does not transfer, as across reef photos), and the biases correct a
model that over- or under-predicts a class here (pseudo-label models draw thick membranes in
EM). A few points thus correct the survey model, and the survey model fills what the points do
not reach. With fewer than 6 points (no folds) ``b = 1, c = 0``.

On a single-channel image whose expansion chose no spatial expert, the expansion is a pixel
classifier on the filters the survey model uses, fitted on a few dozen pixels instead of
thousands: its term is left out (``r = 0``) and the points only recalibrate the survey model,
with the firmer bias ridge :data:`PIXEL_ONLY_BIAS_PENALTY`. On the EM test slices of
``benchmarks/bench_survey.py`` (smoothed pseudo-label forest, 3 x 25 random points) that
took ``expand --model`` from 67.4 to 69.7 mIoU (``predict`` 69.5); colour images whose
expansion has no graph keep it (aerial tiles: 45.7 with it, 40.5 without).

Choosing the (expansion, prior) weights per image by cross-validated mIoU over the points
(the former method) was too noisy with 25 points: the expansion's own held-out score is
optimistic (its experts' weights were picked on the same points), so it won where the model was
far better (EM) and lost where it was not. The constants were chosen on a development subset
of ``benchmarks/bench_survey.py`` (see its notes).
"""

from __future__ import annotations

import numpy as np

from .classaxis import softmax_inplace

__all__ = ["EXPANSION_WEIGHT", "EXPANSION_FLOOR", "PRIOR_FLOOR", "WEIGHT_PENALTY",
           "BIAS_PENALTY", "PIXEL_ONLY_BIAS_PENALTY", "check_prior", "prior_on_grid",
           "expansion_logits", "prior_logits", "fit_calibration", "combine_prior"]

#: Weight of the expansion's log-probabilities (the prior's weight is fitted per image).
EXPANSION_WEIGHT = 0.75
#: Uniform share mixed into the expansion's posterior before its logarithm.
EXPANSION_FLOOR = 0.3
#: Uniform share mixed into the prior before its logarithm.
PRIOR_FLOOR = 0.2
#: Ridge penalty of the prior's weight (towards 1).
WEIGHT_PENALTY = 1.0
#: Ridge penalty of the per-class biases (towards 0).
BIAS_PENALTY = 3.0
#: Ridge penalty of the biases when the expansion's term is left out (grey, no graph).
PIXEL_ONLY_BIAS_PENALTY = 10.0
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


def _mixed_log(proba: np.ndarray, share: float) -> np.ndarray:
    """``log((1 - share) p + share / K)`` over the last axis (float32)."""
    k = proba.shape[-1]
    mixed = np.asarray(proba, dtype=np.float32) * np.float32(1 - share)
    mixed += np.float32(share / k)
    return np.log(mixed)


def expansion_logits(proba: np.ndarray, weight: float = EXPANSION_WEIGHT) -> np.ndarray:
    """``r log p̃``: the expansion's weighted term of the combination (float32).

    Parameters
    ----------
    proba : (..., K) ndarray
        The expansion's class probabilities.
    weight : float
        ``r``.
    """
    z = _mixed_log(proba, EXPANSION_FLOOR)
    z *= np.float32(weight)
    return z


def prior_logits(prior_logp: np.ndarray) -> np.ndarray:
    """``log q̃``: the prior's term of the combination before its weight (float32).

    Parameters
    ----------
    prior_logp : (..., K) ndarray
        The prior's log-probabilities (:func:`prior_on_grid`).
    """
    return _mixed_log(np.exp(prior_logp), PRIOR_FLOOR)


def fit_calibration(
    offset: np.ndarray,
    prior: np.ndarray,
    ci: np.ndarray,
    *,
    weight_penalty: float = WEIGHT_PENALTY,
    bias_penalty: float = BIAS_PENALTY,
    iterations: int = 50,
) -> tuple[float, np.ndarray]:
    """The prior's weight and per-class biases that best predict the points' classes.

    Minimises ``-sum_i log softmax(offset_i + b prior_i + c)[ci_i] + weight_penalty (b - 1)^2
    + bias_penalty |c|^2`` by damped Newton steps (the problem is convex).

    Parameters
    ----------
    offset : (n, K) ndarray
        The fixed part of the logits at the points (:func:`expansion_logits` of the expansion's
        held-out posteriors; zeros to calibrate the prior alone).
    prior : (n, K) ndarray
        The prior's logits at the points (:func:`prior_logits`).
    ci : (n,) ndarray of int
        The points' class indices.
    weight_penalty, bias_penalty : float
        Ridge weights towards ``b = 1`` and ``c = 0``.
    iterations : int
        At most this many Newton steps.

    Returns
    -------
    weight : float
        The prior's weight ``b`` (at least 0).
    bias : (K,) ndarray of float
    """
    z = np.asarray(prior, dtype=np.float64)
    off = np.asarray(offset, dtype=np.float64)
    n, k = z.shape
    y = np.zeros((n, k))
    y[np.arange(n), ci] = 1.0
    centre = np.zeros(k + 1)
    centre[0] = 1.0
    ridge = np.full(k + 1, float(bias_penalty))
    ridge[0] = weight_penalty

    def objective(t):
        u = off + t[0] * z + t[1:]
        u = u - u.max(axis=1, keepdims=True)
        lp = u - np.log(np.exp(u).sum(axis=1, keepdims=True))
        return -(lp * y).sum() + (ridge * (t - centre) ** 2).sum(), np.exp(lp)

    theta = centre.copy()
    value, p = objective(theta)
    for _ in range(iterations):
        r = p - y  # d loss / d logits
        grad = np.concatenate([[(r * z).sum()], r.sum(axis=0)]) + 2 * ridge * (theta - centre)
        # sum_i J_i^T (diag p_i - p_i p_i^T) J_i with J_i = [z_i | I] (d logits / d theta)
        mean_z = (p * z).sum(axis=1, keepdims=True)
        hess = np.diag(2 * ridge)
        hess[0, 0] += (p * z * z).sum() - (mean_z**2).sum()
        hess[0, 1:] += (p * (z - mean_z)).sum(axis=0)
        hess[1:, 0] = hess[0, 1:]
        hess[1:, 1:] += np.diag(p.sum(axis=0)) - p.T @ p
        step = np.linalg.solve(hess, grad)
        shrink = 1.0
        while shrink > 1e-4:
            trial = theta - shrink * step
            v, pt = objective(trial)
            if v <= value:
                break
            shrink /= 2
        else:
            break
        converged = value - v < 1e-9
        theta, value, p = trial, v, pt
        if converged:
            break
    return max(0.0, float(theta[0])), theta[1:]


def combine_prior(pmap: np.ndarray, prior_logp: np.ndarray, weight: float = 1.0,
                  bias: np.ndarray | None = None, *,
                  expansion_weight: float = EXPANSION_WEIGHT) -> np.ndarray:
    """``softmax(r log p̃map + b log q̃ + c)`` over the class axis (a new float32 array);
    ``weight`` is ``b``, ``expansion_weight`` ``r``."""
    z = expansion_logits(pmap, expansion_weight)
    q = prior_logits(prior_logp)
    q *= np.float32(weight)
    z += q
    if bias is not None:
        z += np.asarray(bias, dtype=np.float32)
    return softmax_inplace(z)
