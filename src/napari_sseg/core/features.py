"""Multi-scale pixel filter bank, like ilastik's pixel-classification features.

For every scale ``sigma`` the bank holds, in this order:

* ``gaussian``: Gaussian smoothing of every channel,
* ``gradient``: Gaussian gradient magnitude,
* ``log``: Laplacian of Gaussian (the trace of the Hessian),
* ``hessian``: both eigenvalues of the Hessian of Gaussian (larger first),
* ``structure``: both eigenvalues of the structure tensor (gradients at ``sigma``, their
  products smoothed at ``sigma / 2``, as ilastik does; larger first),
* ``dog``: difference of Gaussians, ``G(sigma) - G(0.66 sigma)``.

Smoothing is applied to every channel; the texture filters (all but ``gaussian``) to one
"texture" channel: the only channel of a grey image, the luminance of an RGB image, the first
principal component of other multichannel images (or, with ``texture="all"``, every channel).

The whole bank of a large image can be computed in strips of rows
(:func:`iter_filter_bank`) or only at chosen pixels (:func:`filter_bank_at`): each strip is
filtered with a halo wide enough for the widest kernel, so the values match the full-image bank.
Pure numpy / scipy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage as ndi

from .image import normalized_float

__all__ = [
    "DEFAULT_SCALES",
    "FEATURE_KINDS",
    "filter_bank",
    "feature_names",
    "iter_filter_bank",
    "filter_bank_at",
]

DEFAULT_SCALES: tuple[float, ...] = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
FEATURE_KINDS: tuple[str, ...] = ("gaussian", "gradient", "log", "hessian", "structure", "dog")
_TEXTURE_MODES = ("auto", "luminance", "pca", "first", "all")
_DOG_RATIO = 0.66
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _check_options(scales, features, texture, truncate):
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive numbers, got {scales}")
    features = tuple(features)
    unknown = [f for f in features if f not in FEATURE_KINDS]
    if unknown or not features:
        raise ValueError(f"unknown feature kinds {unknown or features}; choose from {FEATURE_KINDS}")
    if texture not in _TEXTURE_MODES:
        raise ValueError(f"texture must be one of {_TEXTURE_MODES}, got {texture!r}")
    if truncate <= 0:
        raise ValueError(f"truncate must be positive, got {truncate}")
    return scales, features


def _prepare(image, normalize):
    """(M, N, C) float32 image (normalised to about [0, 1] unless ``normalize`` is False)."""
    if normalize:
        return normalized_float(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2 or arr.shape[2] < 1:
        raise ValueError(f"image: expected shape (rows, cols) or (rows, cols, channels), "
                         f"got {np.shape(image)}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise ValueError(f"image: unsupported dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _texture_weights(img: np.ndarray, texture: str) -> np.ndarray | None:
    """(C, T) projection of the channels onto the texture channels (None: every channel)."""
    c = img.shape[2]
    if texture == "all":
        return None
    if c == 1 or texture == "first":
        w = np.zeros((c, 1), dtype=np.float32)
        w[0] = 1.0
        return w
    if texture in ("auto", "luminance") and c == 3:
        return _LUMA[:, None].copy()
    if texture == "luminance":
        return np.full((c, 1), 1.0 / c, dtype=np.float32)
    # first principal component, on a sample, sign fixed so that it correlates with the mean
    step = max(1, img.shape[0] * img.shape[1] // 100_000)
    sample = img.reshape(-1, c)[::step].astype(np.float64)
    cov = np.cov(sample, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    v = vecs[:, -1]
    if v.sum() < 0:
        v = -v
    if vals[-1] <= 1e-12:
        v = np.full(c, 1.0 / np.sqrt(c))
    return v.astype(np.float32)[:, None]


def _n_texture(n_channels: int, texture: str) -> int:
    return n_channels if texture == "all" else 1


def feature_names(
    n_channels: int,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    features: Sequence[str] = FEATURE_KINDS,
    texture: str = "auto",
) -> list[str]:
    """Names of the features :func:`filter_bank` returns, in its order.

    Parameters
    ----------
    n_channels : int
        Channels of the image (1 for grey, 3 for RGB; RGBA counts as 3).
    scales, features, texture
        As for :func:`filter_bank`.

    Returns
    -------
    list of str
        For example ``"gaussian_s1.6_c0"``, ``"hessian_max_s1.6"``, ``"dog_s1.6_t1"``
        (``_t<i>`` only when ``texture="all"`` gives several texture channels).
    """
    scales, features = _check_options(scales, features, texture, 1.0)
    if n_channels == 4:
        n_channels = 3
    n_tex = _n_texture(n_channels, texture)
    names = []
    for s in scales:
        tag = f"s{s:g}"
        if "gaussian" in features:
            names += [f"gaussian_{tag}_c{c}" for c in range(n_channels)]
        for t in range(n_tex):
            suffix = f"_t{t}" if n_tex > 1 else ""
            for kind in FEATURE_KINDS[1:]:
                if kind in features:
                    subs = ("max_", "min_") if kind in ("hessian", "structure") else ("",)
                    names += [f"{kind}_{sub}{tag}{suffix}" for sub in subs]
    return names


def _halo(scales, features, truncate) -> int:
    """Rows of context a strip needs so its features equal the full-image ones."""
    smax = max(scales)
    extra = 0.5 * smax if "structure" in features else 0.0
    return int(np.ceil(truncate * smax)) + int(np.ceil(truncate * extra)) + 2


def _eig2(a, b, c):
    """Eigenvalues (larger, smaller) of the symmetric 2x2 matrices [[a, b], [b, c]]."""
    half = (a + c) * np.float32(0.5)
    root = np.sqrt(((a - c) * np.float32(0.5)) ** 2 + b * b)
    return half + root, half - root


def _bank(img, tex, scales, features, truncate, out):
    """Fill ``out`` (M, N, F) with the bank of ``img`` (M, N, C) and texture channels ``tex``.

    The separable passes are shared: one pass along the columns (Gaussian order 0, 1 or 2)
    serves every derivative with that column order.
    """
    k = 0

    def g1(x, s, axis, order):
        return ndi.gaussian_filter1d(x, s, axis=axis, order=order, truncate=truncate)

    for s in scales:
        if "gaussian" in features:
            for ch in range(img.shape[2]):
                out[:, :, k] = ndi.gaussian_filter(img[:, :, ch], s, truncate=truncate)
                k += 1
        for t in range(tex.shape[2]):
            x = tex[:, :, t]
            cols = {}  # column order -> column pass

            def d(order_r, order_c):
                if order_c not in cols:
                    cols[order_c] = g1(x, s, 1, order_c)
                return g1(cols[order_c], s, 0, order_r)

            grad = None
            if "gradient" in features or "structure" in features:
                grad = d(1, 0), d(0, 1)
            hess = None
            if "log" in features or "hessian" in features:
                hess = d(2, 0), d(1, 1), d(0, 2)
            if "gradient" in features:
                out[:, :, k] = np.sqrt(grad[0] * grad[0] + grad[1] * grad[1])
                k += 1
            if "log" in features:
                out[:, :, k] = hess[0] + hess[2]
                k += 1
            if "hessian" in features:
                out[:, :, k], out[:, :, k + 1] = _eig2(*hess)
                k += 2
            if "structure" in features:
                gr, gc = grad
                outer = 0.5 * s
                out[:, :, k], out[:, :, k + 1] = _eig2(
                    ndi.gaussian_filter(gr * gr, outer, truncate=truncate),
                    ndi.gaussian_filter(gr * gc, outer, truncate=truncate),
                    ndi.gaussian_filter(gc * gc, outer, truncate=truncate))
                k += 2
            if "dog" in features:
                out[:, :, k] = d(0, 0) - ndi.gaussian_filter(x, _DOG_RATIO * s, truncate=truncate)
                k += 1
    return out


class _Bank:
    """Checked options, prepared image and texture projection shared by the public functions."""

    def __init__(self, image, scales, features, texture, truncate, normalize):
        self.scales, self.features = _check_options(scales, features, texture, truncate)
        self.truncate = float(truncate)
        self.img = _prepare(image, normalize)
        self.weights = _texture_weights(self.img, texture)
        self.n_features = len(feature_names(self.img.shape[2], scales=self.scales,
                                            features=self.features, texture=texture))
        self.halo = _halo(self.scales, self.features, self.truncate)

    def compute(self, start: int, stop: int) -> np.ndarray:
        """Features of rows ``start:stop`` (filtered with a halo, cropped back)."""
        m = self.img.shape[0]
        lo, hi = max(0, start - self.halo), min(m, stop + self.halo)
        part = self.img[lo:hi]
        tex = part if self.weights is None else np.ascontiguousarray(part @ self.weights)
        out = np.empty((hi - lo, part.shape[1], self.n_features), dtype=np.float32)
        _bank(part, tex, self.scales, self.features, self.truncate, out)
        return out[start - lo: stop - lo]


def filter_bank(
    image: np.ndarray,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    features: Sequence[str] = FEATURE_KINDS,
    texture: str = "auto",
    truncate: float = 3.0,
    normalize: bool = True,
) -> np.ndarray:
    """Multi-scale filter features of every pixel (ilastik's pixel-classification set).

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray
        Grey, RGB, RGBA (alpha ignored) or channel-last multichannel image, any numeric dtype.
    scales : sequence of float
        Gaussian scales (pixels) at which every feature kind is computed.
    features : sequence of str
        Feature kinds to compute, a subset of :data:`FEATURE_KINDS` (the output keeps the
        order of :data:`FEATURE_KINDS`, whatever order is given).
    texture : {"auto", "luminance", "pca", "first", "all"}
        Channel(s) the texture filters see: "auto" is luminance for RGB and the first
        principal component for other multichannel images; "luminance" the (RGB-weighted or
        plain) mean; "pca" the first principal component; "first" the first channel (for
        example L of a CIELAB image); "all" every channel.
    truncate : float
        Gaussian kernels are cut at this many standard deviations.
    normalize : bool
        Scale each channel to about [0, 1] first (see
        :func:`~napari_sseg.core.image.normalized_float`); False filters the values as given.

    Returns
    -------
    (M, N, F) ndarray of float32
        Features in the order of :func:`feature_names`. For C channels and T texture channels
        there are ``len(scales) * (C + 7 T)`` with every kind (48 for grey, 60 for RGB with
        the default six scales).

    Raises
    ------
    ValueError
        If the image is not a 2D (multichannel) numeric array, or an option is invalid.

    Notes
    -----
    Memory: the result takes ``4 F`` bytes per pixel (about 240 MB for 1 megapixel of RGB);
    for larger images use :func:`iter_filter_bank` or :func:`filter_bank_at`.
    """
    bank = _Bank(image, scales, features, texture, truncate, normalize)
    return bank.compute(0, bank.img.shape[0])


def iter_filter_bank(
    image: np.ndarray,
    *,
    strip_rows: int = 256,
    scales: Sequence[float] = DEFAULT_SCALES,
    features: Sequence[str] = FEATURE_KINDS,
    texture: str = "auto",
    truncate: float = 3.0,
    normalize: bool = True,
) -> Iterator[tuple[slice, np.ndarray]]:
    """The filter bank one strip of rows at a time, with bounded memory.

    Each strip is filtered together with a halo of rows as wide as the widest kernel, so the
    strips put together equal :func:`filter_bank` (to float32 rounding).

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray
    strip_rows : int
        Rows per strip (the last may be shorter).
    scales, features, texture, truncate, normalize
        As for :func:`filter_bank`.

    Yields
    ------
    rows : slice
        The image rows of the strip.
    features : (R, N, F) ndarray of float32
    """
    if strip_rows < 1:
        raise ValueError(f"strip_rows must be at least 1, got {strip_rows}")
    bank = _Bank(image, scales, features, texture, truncate, normalize)
    m = bank.img.shape[0]
    for start in range(0, m, strip_rows):
        stop = min(m, start + strip_rows)
        yield slice(start, stop), bank.compute(start, stop)


def filter_bank_at(
    image: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    strip_rows: int = 256,
    scales: Sequence[float] = DEFAULT_SCALES,
    features: Sequence[str] = FEATURE_KINDS,
    texture: str = "auto",
    truncate: float = 3.0,
    normalize: bool = True,
) -> np.ndarray:
    """Filter-bank features at chosen pixels only, computing only the strips that hold them.

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray
    rows, cols : (S,) ndarray of int
        Pixel coordinates (row, col) inside the image.
    strip_rows : int
        Rows per computed strip (memory is about ``4 F (strip_rows + 2 halo) N`` bytes).
    scales, features, texture, truncate, normalize
        As for :func:`filter_bank`.

    Returns
    -------
    (S, F) ndarray of float32
        Row ``i`` holds the features of pixel ``(rows[i], cols[i])``.

    Raises
    ------
    ValueError
        If a pixel lies outside the image or the coordinates differ in length.
    """
    rows = np.asarray(rows, dtype=np.int64).ravel()
    cols = np.asarray(cols, dtype=np.int64).ravel()
    if rows.shape != cols.shape:
        raise ValueError(f"rows ({rows.size}) and cols ({cols.size}) differ in length")
    if strip_rows < 1:
        raise ValueError(f"strip_rows must be at least 1, got {strip_rows}")
    bank = _Bank(image, scales, features, texture, truncate, normalize)
    m, n = bank.img.shape[:2]
    bad = (rows < 0) | (rows >= m) | (cols < 0) | (cols >= n)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"pixel {i} at (row {rows[i]}, col {cols[i]}) lies outside the "
                         f"image of {m} x {n} pixels")
    out = np.empty((rows.size, bank.n_features), dtype=np.float32)
    strip = rows // strip_rows
    for s in np.unique(strip):
        sel = np.flatnonzero(strip == s)
        start = int(s) * strip_rows
        feats = bank.compute(start, min(m, start + strip_rows))
        out[sel] = feats[rows[sel] - start, cols[sel]]
    return out
