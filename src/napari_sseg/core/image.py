"""Image normalisation: grey, RGB, RGBA and multichannel images of any dtype to float features."""

from __future__ import annotations

import numpy as np

__all__ = ["as_channels", "to_rgb_uint8", "normalized_float"]


def as_channels(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Return a (M, N, C) view of a 2D image, RGBA alpha dropped.

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray
        Grey, RGB, RGBA or channel-last multichannel image of integer, bool or float dtype.
    name : str
        Name used in error messages.

    Raises
    ------
    ValueError
        If the image is not 2D (with optional channel axis), is empty or has no numeric dtype.
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name}: unsupported dtype {arr.dtype}; expected integer or float pixels")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim != 3:
        raise ValueError(
            f"{name}: expected a 2D image of shape (rows, cols) or (rows, cols, channels), "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] < 2 or arr.shape[1] < 2 or arr.shape[2] < 1:
        raise ValueError(f"{name}: image of shape {arr.shape} is too small")
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return arr


def normalized_float(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """(M, N, C) float32 image with each channel robustly scaled to about [0, 1].

    Integer images are divided by their dtype's range when they use it, otherwise each channel is
    scaled between its 0.5 and 99.5 percentiles; NaNs become 0.
    """
    arr = as_channels(image, name=name)
    out = np.empty(arr.shape, dtype=np.float32)
    for c in range(arr.shape[2]):
        ch = arr[:, :, c]
        if ch.dtype == np.uint8:
            out[:, :, c] = ch * np.float32(1 / 255)
            continue
        chf = ch.astype(np.float32)
        finite = np.isfinite(chf)
        if not finite.all():
            chf = np.where(finite, chf, 0).astype(np.float32)
        step = max(1, chf.size // 200_000)
        sample = chf.reshape(-1)[::step]
        lo, hi = np.percentile(sample, [0.5, 99.5])
        if hi <= lo:
            lo, hi = float(sample.min()), float(sample.max())
        if hi <= lo:
            out[:, :, c] = 0
        else:
            out[:, :, c] = np.clip((chf - lo) / (hi - lo), 0, 1)
    return out


def to_rgb_uint8(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """(M, N, 3) uint8 RGB rendering of any supported image (grey repeated, >3 channels: first 3)."""
    arr = as_channels(image, name=name)
    if arr.dtype == np.uint8 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    f = normalized_float(arr, name=name)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    elif f.shape[2] == 2:
        f = np.concatenate([f, f[:, :, :1]], axis=2)
    elif f.shape[2] > 3:
        f = f[:, :, :3]
    return np.round(f * 255).astype(np.uint8)
