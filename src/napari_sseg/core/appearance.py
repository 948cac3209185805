"""Appearance model learnt from the labelled points alone: pixel features and a small classifier.

Features are colour (CIELAB for RGB) smoothed at a few scales plus texture filters of the
luminance (gradient magnitude, Laplacian of Gaussian, Hessian eigenvalues, local standard
deviation), optionally with wider context scales. A linear discriminant with a shrunk pooled
covariance and equal class priors is fitted to the feature vectors under and right next to each
labelled point (and, as an alternative, to the pixels of the regions they seed). A tree
ensemble (scikit-learn's extremely randomised trees) on the multi-scale filter bank of
:mod:`~napari_sseg.core.features` is the non-linear alternative, for thin or textured structures
that no linear boundary separates.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .classaxis import log_softmax_inplace

__all__ = ["pixel_features", "LinearModel", "fit_lda", "ForestModel", "fit_forest"]


def pixel_features(colour: np.ndarray, *, context: tuple[float, ...] = ()) -> np.ndarray:
    """Per-pixel features of a (M, N, C) image on a CIELAB-like 0..100 scale.

    Parameters
    ----------
    colour : (M, N, C) ndarray of float32
    context : tuple of float
        Extra, wider Gaussian scales at which the colour and the local contrast are added.

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
    lum2 = lum * lum
    for s in (3.0, *context):
        mean = ndi.gaussian_filter(lum, s, truncate=3.0)
        sq = ndi.gaussian_filter(lum2, s, truncate=3.0)
        feats.append(np.sqrt(np.maximum(sq - mean * mean, 0)))
    for s in context:
        for ch in range(c):
            feats.append(ndi.gaussian_filter(colour[:, :, ch], s, truncate=3.0))
    return np.stack(feats, axis=-1).astype(np.float32, copy=False)


class LinearModel:
    """A linear classifier on standardised features: softmax of ``x @ weights + bias``."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray, bias: np.ndarray):
        self.mean = mean
        self.scale = scale
        self.weights = weights
        self.bias = bias

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """Log class probabilities of feature rows ``x`` (..., F) -> (..., K).

        Only the first ``F`` columns (as many as the model was fitted on) are used, so a model
        fitted on the base features accepts rows that also carry context features.
        """
        x = x[..., : self.mean.size]
        # standardisation folded into the weights: no standardised copy of ``x``
        weights = self.weights / self.scale[:, None]
        z = x @ weights + (self.bias - self.mean @ weights)
        return log_softmax_inplace(z)


def fit_lda(x: np.ndarray, y: np.ndarray, n_classes: int, *, shrinkage: float = 0.3) -> LinearModel:
    """Linear discriminant analysis with a shrunk shared covariance and equal class priors.

    Closed form, so fitting is cheap enough to repeat for cross-validation. Returned as a
    :class:`LinearModel` (the LDA posterior is a softmax of linear functions).

    Parameters
    ----------
    x : (S, F) ndarray
        Feature rows.
    y : (S,) ndarray of int
        Class index of each row in ``0..n_classes-1``.
    n_classes : int
    shrinkage : float
        Blend of the pooled covariance with a scaled identity (0: none, 1: identity).
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
    return LinearModel(mean.astype(np.float32), scale.astype(np.float32),
                         prec_mu.astype(np.float32), bias.astype(np.float32))


class ForestModel:
    """A fitted tree ensemble over a block of feature columns, as class log-probabilities.

    Parameters
    ----------
    forest : sklearn.ensemble.ExtraTreesClassifier or RandomForestClassifier
        Fitted on class indices.
    start : int
        First feature column the forest reads (it reads ``forest.n_features_in_`` columns).
    n_classes : int
    floor : float
        Probability mass mixed in uniformly over the classes the forest saw, so that no class
        it knows gets a log-probability of minus infinity; unseen classes get -1e3, as in
        :func:`fit_lda`.
    """

    def __init__(self, forest, start: int, n_classes: int, *, floor: float = 0.02):
        self.forest = forest
        self.start = start
        self.n_classes = n_classes
        self.floor = floor

    def log_proba(self, x: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
        """Log class probabilities of feature rows ``x`` (..., F) -> (..., K) float32."""
        stop = self.start + self.forest.n_features_in_
        flat = x.reshape(-1, x.shape[-1])
        out = np.full((flat.shape[0], self.n_classes), -1e3, dtype=np.float32)
        seen = self.forest.classes_.astype(np.int64)
        mix = self.floor / seen.size
        for i in range(0, flat.shape[0], chunk):
            p = self.forest.predict_proba(flat[i:i + chunk, self.start:stop])
            out[i:i + chunk, seen] = np.log((1 - self.floor) * p + mix)
        return out.reshape(*x.shape[:-1], self.n_classes)


class ProductModel:
    """The normalised geometric mean of several models' class probabilities.

    Parameters
    ----------
    models : sequence of models with ``log_proba``
        Each takes the same feature rows (``LinearModel`` and ``ForestModel`` read their own
        columns).
    """

    def __init__(self, models):
        self.models = list(models)

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """Log class probabilities of feature rows ``x`` (..., F) -> (..., K) float32."""
        z = sum(m.log_proba(x) for m in self.models) / np.float32(len(self.models))
        return log_softmax_inplace(z.astype(np.float32, copy=False))


def fit_forest(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    start: int = 0,
    n_trees: int = 32,
    max_depth: int | None = 12,
    max_samples: int = 4000,
    max_features: float | str = "sqrt",
    seed: int = 0,
) -> ForestModel:
    """Extremely randomised trees on feature columns ``start:`` of ``x``, balanced classes.

    Parameters
    ----------
    x : (S, F) ndarray
        Feature rows.
    y : (S,) ndarray of int
        Class index of each row in ``0..n_classes-1``.
    n_classes : int
    start : int
        First column used (the columns before it are ignored, here and in prediction).
    n_trees, max_depth : int
        Size of the ensemble (kept small: every pixel of the image is predicted).
    max_samples : int
        At most this many rows (a seeded random subsample) train the trees.
    max_features : float or str
        Features drawn at each split (scikit-learn's ``max_features``: a fraction or
        ``"sqrt"``).
    seed : int
        Seed of the subsample and the trees.
    """
    from sklearn.ensemble import ExtraTreesClassifier

    x = np.asarray(x, dtype=np.float32)[:, start:]
    y = np.asarray(y)
    if len(y) > max_samples:
        keep = np.random.default_rng(seed).choice(len(y), max_samples, replace=False)
        x, y = x[keep], y[keep]
    forest = ExtraTreesClassifier(n_estimators=n_trees, max_depth=max_depth,
                                  class_weight="balanced", max_features=max_features,
                                  random_state=seed, n_jobs=1)
    forest.fit(x, y)
    return ForestModel(forest, start, n_classes)
