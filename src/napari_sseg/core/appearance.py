"""Appearance model learnt from the labelled points alone: pixel features and a small classifier.

Features are colour (CIELAB for RGB) smoothed at a few scales plus texture filters of the
luminance (gradient magnitude, Laplacian of Gaussian, Hessian eigenvalues, local standard
deviation). A class-balanced, L2-regularised multinomial logistic regression is fitted to the
feature vectors under and right next to each labelled point.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import minimize

__all__ = ["pixel_features", "LogisticModel", "fit_logistic"]


def pixel_features(colour: np.ndarray) -> np.ndarray:
    """Per-pixel features of a (M, N, C) image on a CIELAB-like 0..100 scale.

    Returns
    -------
    (M, N, F) ndarray of float32
    """
    m, n, c = colour.shape
    lum = colour[:, :, 0] if c == 3 else colour.mean(axis=2)
    feats = []
    for ch in range(c):
        x = colour[:, :, ch]
        feats.append(x)
        for s in (1.0, 3.0):
            feats.append(ndi.gaussian_filter(x, s, truncate=3.0))
    for s in (1.0, 3.0):
        feats.append(ndi.gaussian_gradient_magnitude(lum, s, truncate=3.0))
        feats.append(s * s * ndi.gaussian_laplace(lum, s, truncate=3.0))
    s = 1.5
    hrr = ndi.gaussian_filter(lum, s, order=(2, 0), truncate=3.0)
    hcc = ndi.gaussian_filter(lum, s, order=(0, 2), truncate=3.0)
    hrc = ndi.gaussian_filter(lum, s, order=(1, 1), truncate=3.0)
    root = np.sqrt(((hrr - hcc) / 2) ** 2 + hrc**2)
    feats.append(s * s * ((hrr + hcc) / 2 + root))
    feats.append(s * s * ((hrr + hcc) / 2 - root))
    mean = ndi.gaussian_filter(lum, 3.0, truncate=3.0)
    sq = ndi.gaussian_filter(lum * lum, 3.0, truncate=3.0)
    feats.append(np.sqrt(np.maximum(sq - mean * mean, 0)))
    return np.stack(feats, axis=-1).astype(np.float32, copy=False)


class LogisticModel:
    """A fitted multinomial logistic regression on standardised features."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray, bias: np.ndarray):
        self.mean = mean
        self.scale = scale
        self.weights = weights
        self.bias = bias

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """Log class probabilities of feature rows ``x`` (..., F) -> (..., K)."""
        z = ((x - self.mean) / self.scale) @ self.weights + self.bias
        z -= z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def fit_logistic(
    x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 1.0
) -> LogisticModel:
    """Fit a class-balanced L2-regularised multinomial logistic regression.

    Parameters
    ----------
    x : (S, F) ndarray
        Feature rows.
    y : (S,) ndarray of int
        Class index of each row in ``0..n_classes-1``.
    n_classes : int
    l2 : float
        Strength of the L2 penalty on the weights (per sample-weight unit).
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    xs = (x - mean) / scale
    s, f = xs.shape
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    sw = np.where(present, 1.0 / np.maximum(counts, 1), 0.0)[y]
    sw *= present.sum() / sw.sum() if sw.sum() > 0 else 1.0
    onehot = np.zeros((s, n_classes))
    onehot[np.arange(s), y] = 1.0
    lam = l2 * present.sum()

    def loss(theta):
        wb = theta.reshape(f + 1, n_classes)
        z = xs @ wb[:f] + wb[f]
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        val = -(sw * (onehot * logp).sum(axis=1)).sum() + 0.5 * lam * (wb[:f] ** 2).sum()
        grad_z = (np.exp(logp) - onehot) * sw[:, None]
        g = np.vstack([xs.T @ grad_z + lam * wb[:f], grad_z.sum(axis=0)])
        return val, g.ravel()

    theta0 = np.zeros((f + 1) * n_classes)
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 200})
    wb = res.x.reshape(f + 1, n_classes)
    bias = wb[f].copy()
    bias[~present] = -1e3  # classes without samples are never predicted
    return LogisticModel(mean.astype(np.float32), scale.astype(np.float32),
                         wb[:f].astype(np.float32), bias.astype(np.float32))


def fit_lda(x: np.ndarray, y: np.ndarray, n_classes: int, *, shrinkage: float = 0.3) -> LogisticModel:
    """Linear discriminant analysis with a shrunk shared covariance and equal class priors.

    Closed form, so fitting is cheap enough to repeat for cross-validation. Returned as a
    :class:`LogisticModel` (the LDA posterior is a multinomial logistic function).
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    xs = (x - mean) / scale
    f = xs.shape[1]
    present = np.bincount(y, minlength=n_classes) > 0
    mus = np.zeros((n_classes, f))
    resid = np.empty_like(xs)
    for k in np.flatnonzero(present):
        sel = y == k
        mus[k] = xs[sel].mean(axis=0)
        resid[sel] = xs[sel] - mus[k]
    cov = resid.T @ resid / max(len(xs) - present.sum(), 1)
    cov = (1 - shrinkage) * cov + shrinkage * np.eye(f) * max(np.trace(cov) / f, 1e-3)
    prec_mu = np.linalg.solve(cov, mus.T)  # (F, K)
    bias = -0.5 * np.einsum("kf,fk->k", mus, prec_mu)
    bias[~present] = -1e3
    return LogisticModel(mean.astype(np.float32), scale.astype(np.float32),
                         prec_mu.astype(np.float32), bias.astype(np.float32))
