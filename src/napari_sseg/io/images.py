"""Image reading and label/overlay writing (PNG, JPEG, TIFF) with clear errors and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .classes import ClassTable

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "list_images",
    "read_image",
    "read_label_image",
    "write_label_image",
    "overlay_rgb",
    "write_overlay",
    "write_rgb",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_TIFF = (".tif", ".tiff")


class ImageReadError(ValueError):
    """An image that cannot be read (missing, corrupt, truncated or of an unusable shape)."""


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (by suffix, case-insensitive) directly inside ``folder``, sorted by name.

    Hidden files (starting with ``.``) are skipped.
    """
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _pil_open(path: Path):
    """``PIL.Image.open`` without the decompression-bomb limit: large survey mosaics and slides
    are legitimate inputs here."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _read_raw(path: Path) -> np.ndarray:
    if path.suffix.lower() in _TIFF:
        import tifffile

        arr = np.asarray(tifffile.imread(path))
        if arr.ndim == 3 and arr.shape[0] <= 4 and arr.shape[2] > 4:
            arr = np.moveaxis(arr, 0, -1)  # channel-first TIFF -> channel-last
        return arr
    with _pil_open(path) as im:
        im.load()  # decode now so a truncated file fails here, not later
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif im.mode == "1":
            im = im.convert("L")
        elif im.mode == "LA":
            im = im.convert("L")
        elif im.mode == "PA":
            im = im.convert("RGB")
        arr = np.asarray(im)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D grey, RGB(A) or multichannel image.

    Parameters
    ----------
    path : str or PathLike
        PNG, JPEG, BMP (Pillow) or TIFF (tifffile; channel-first TIFFs with up to 4 channels are
        moved to channel-last).

    Returns
    -------
    (M, N) or (M, N, C) ndarray

    Raises
    ------
    ImageReadError
        Naming the file, when it is missing, corrupt or truncated, or not a 2D image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    try:
        arr = _read_raw(path)
    except Exception as exc:  # any decoder failure: corrupt, truncated, unknown format
        raise ImageReadError(f"{path}: cannot read image (corrupt or truncated?): {exc}") from exc
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(
            f"{path}: expected a 2D image (rows, cols[, channels]), got shape {arr.shape}"
        )
    return arr


def read_label_image(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel class-index image (ground truth or prediction).

    Palette PNGs give their indices; an RGB image whose channels are equal gives one channel.

    Raises
    ------
    ImageReadError
        If the file cannot be read, is not single-channel or holds non-integer values.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such label image")
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            arr = np.asarray(tifffile.imread(path))
        else:
            with _pil_open(path) as im:
                im.load()
                arr = np.asarray(im)  # mode 'P' keeps the indices
    except Exception as exc:
        raise ImageReadError(
            f"{path}: cannot read label image (corrupt or truncated?): {exc}"
        ) from exc
    if arr.ndim == 3 and arr.shape[2] in (3, 4) and all(
        np.array_equal(arr[:, :, 0], arr[:, :, k]) for k in (1, 2)
    ):
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise ImageReadError(
            f"{path}: expected a single-channel class-index image, got shape {arr.shape}"
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ImageReadError(f"{path}: class-index image holds non-integer values")
        arr = arr.astype(np.int64)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _label_array(labels: np.ndarray, *, png: bool, max_id: int | None = None) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be a 2D class-index image, got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {arr.dtype}")
    lo = int(arr.min()) if arr.size else 0
    hi = int(arr.max()) if arr.size else 0
    if max_id is not None:
        hi = max(hi, int(max_id))
    if lo < 0:
        raise ValueError(f"labels must be non-negative class ids, got {lo}")
    if hi < 256:
        return arr.astype(np.uint8, copy=False)
    if hi < 65536:
        return arr.astype(np.uint16, copy=False)
    if png:
        raise ValueError(f"class id {hi} does not fit a 16-bit PNG; write a TIFF instead")
    return arr.astype(np.uint32, copy=False)


def write_label_image(
    path: str | os.PathLike, labels: np.ndarray, *, max_id: int | None = None
) -> Path:
    """Write a single-channel class-index image atomically.

    ``.png``: uint8 when every id is below 256, else 16-bit; ``.tif``/``.tiff``: uint8, uint16 or
    uint32 likewise. Pixel values equal the class ids. ``max_id`` (the largest id of the class
    table) keeps the dtype the same over a batch whose images use different classes.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _TIFF:
        arr = _label_array(labels, png=False, max_id=max_id)
        import tifffile

        with atomic_open(path, "wb") as fh:
            tifffile.imwrite(fh, arr, compression="zlib")
        return path
    if suffix != ".png":
        raise ValueError(f"{path}: label images are written as .png or .tif, not {suffix!r}")
    arr = _label_array(labels, png=True, max_id=max_id)
    from PIL import Image

    if arr.dtype == np.uint8:
        im = Image.fromarray(arr, mode="L") if _pil_needs_mode() else Image.fromarray(arr)
    else:
        im = Image.fromarray(arr.astype("<u2"), mode="I;16") if _pil_needs_mode() else (
            Image.fromarray(arr.astype("<u2"))
        )
    with atomic_open(path, "wb") as fh:
        im.save(fh, format="PNG", optimize=False, compress_level=6)
    return path


def _pil_needs_mode() -> bool:
    from PIL import __version__

    return int(__version__.split(".")[0]) < 11


def overlay_rgb(
    image: np.ndarray,
    labels: np.ndarray,
    classes: ClassTable | None = None,
    *,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend class colours over the image.

    Parameters
    ----------
    image : (M, N[, C]) ndarray
    labels : (M, N) ndarray of int
    classes : ClassTable, optional
        Colours per class id (default palette otherwise).
    alpha : float
        Opacity of the class colours.

    Returns
    -------
    (M, N, 3) ndarray of uint8
    """
    from ..core.image import to_rgb_uint8

    lab = np.asarray(labels)
    rgb = to_rgb_uint8(image)
    if rgb.shape[:2] != lab.shape:
        raise ValueError(f"image of shape {rgb.shape[:2]} and labels of shape {lab.shape} differ")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    table = classes or ClassTable()
    lut = table.lut(int(lab.max()) if lab.size else 0).astype(np.uint16)
    a = np.uint16(round(alpha * 256))
    out = np.empty_like(rgb)
    step = max(1, 4_000_000 // max(1, lab.shape[1]))  # row blocks keep memory small
    for r0 in range(0, lab.shape[0], step):
        rows = slice(r0, r0 + step)
        idx = lab[rows]
        for c in range(3):
            # (x * (256 - a) + colour * a + 128) / 256 stays below 2**16
            v = rgb[rows, :, c].astype(np.uint16)
            v *= np.uint16(256) - a
            v += np.take(lut[:, c] * a + np.uint16(128), idx)
            out[rows, :, c] = v >> 8
    return out


def write_rgb(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an (M, N, 3) uint8 image atomically (format from the suffix: PNG, JPEG, TIFF)."""
    path = Path(path)
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    if path.suffix.lower() in _TIFF:
        import tifffile

        with atomic_open(path, "wb") as fh:
            tifffile.imwrite(fh, arr, photometric="rgb", compression="zlib")
        return path
    from PIL import Image

    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: write RGB images as .png, .jpg or .tif")
    # PNG: fast deflate level (overlays of large images would otherwise take tens of seconds)
    opts = {"compress_level": 1} if fmt == "PNG" else {"quality": 92}
    with atomic_open(path, "wb") as fh:
        Image.fromarray(arr).save(fh, format=fmt, **opts)
    return path


def write_overlay(
    path: str | os.PathLike,
    image: np.ndarray,
    labels: np.ndarray,
    classes: ClassTable | None = None,
    *,
    alpha: float = 0.5,
) -> Path:
    """Write the colour overlay of :func:`overlay_rgb` atomically (PNG by default)."""
    return write_rgb(path, overlay_rgb(image, labels, classes, alpha=alpha))
