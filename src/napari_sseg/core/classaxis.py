"""Reductions over the short last (class) axis of probability maps.

numpy reduces a short contiguous last axis slowly: on a (500, 500, 6) float32 map, ``max`` over
the last axis took 12 ms here against 1.2 ms for element-wise maxima over its six slices. These
helpers loop over the classes instead; the results are the same.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_max", "class_sum", "class_argmax", "softmax_inplace", "log_softmax_inplace"]


def _reduce(op, z: np.ndarray) -> np.ndarray:
    out = z[..., 0].copy()
    for k in range(1, z.shape[-1]):
        op(out, z[..., k], out=out)
    return out[..., None]


def class_max(z: np.ndarray) -> np.ndarray:
    """Maximum over the last axis, kept as a length-1 axis."""
    return _reduce(np.maximum, z)


def class_sum(z: np.ndarray) -> np.ndarray:
    """Sum over the last axis, kept as a length-1 axis."""
    return _reduce(np.add, z)


def class_argmax(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index (first of ties, as ``np.argmax``) and value of the maximum over the last axis."""
    best = z[..., 0].copy()
    idx = np.zeros(best.shape, dtype=np.intp)
    for k in range(1, z.shape[-1]):
        better = z[..., k] > best
        idx[better] = k
        np.maximum(best, z[..., k], out=best)
    return idx, best


def softmax_inplace(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, overwriting ``z`` (a float array); returns ``z``."""
    z -= class_max(z)
    np.exp(z, out=z)
    z /= class_sum(z)
    return z


def log_softmax_inplace(z: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, overwriting ``z`` (a float array); returns ``z``."""
    z -= class_max(z)
    z -= np.log(class_sum(np.exp(z)))
    return z
