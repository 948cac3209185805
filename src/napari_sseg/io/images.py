"""Image reading and label/overlay writing (PNG, JPEG, TIFF) with clear errors and atomic writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .classes import ClassTable

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "list_images",
    "read_image",
    "read_image_axes",
    "probe_image_axes",
    "ImageAxes",
    "write_label_stack",
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


@dataclass(frozen=True)
class ImageAxes:
    """An image or stack as read, with its axes.

    Attributes
    ----------
    data : ndarray
        (M, N), (M, N, C), (Z, M, N) or (Z, M, N, C): planes first, channels last.
    axes : str
        ``'YX'``, ``'YXC'``, ``'ZYX'`` or ``'ZYXC'`` (``Z`` stands for any plane axis: z or t).
    note : str
        How the file was read when its axes could be read otherwise (for example 3 pages that
        could be the channels of one image), and the ``--axes`` value that says otherwise;
        empty when the file is unambiguous.
    """

    data: np.ndarray
    axes: str
    note: str = ""

    @property
    def is_stack(self) -> bool:
        return self.axes.startswith("Z")

    def describe(self) -> str:
        """'a stack of 10 planes of 512 x 512' or 'a 2D image of 512 x 512 with 3 channels'."""
        shape = self.data.shape
        if self.is_stack:
            text = f"a stack of {shape[0]} planes of {shape[1]} x {shape[2]}"
        else:
            text = f"a 2D image of {shape[0]} x {shape[1]}"
        if self.axes.endswith("C"):
            text += f" with {shape[-1]} channels"
        return text


_AXES_OK = set("ZTQIYXCS")
_PLANE_LETTERS = set("ZTQI")


def _normalise_axes(path: Path, arr: np.ndarray, stored: str, given: bool) -> ImageAxes:
    """Move ``arr`` with stored axes ``stored`` (tifffile letters or the user's) to planes
    first, channels last."""
    stored = stored.upper()
    if len(stored) != arr.ndim or set(stored) - _AXES_OK or len(set(stored)) != len(stored):
        raise ImageReadError(
            f"{path}: axes {stored!r} do not fit the array of shape {arr.shape}; give one "
            f"letter per axis from Z (or T: planes), Y, X, C (channels), e.g. --axes ZYX"
        )
    plane = [i for i, a in enumerate(stored) if a in _PLANE_LETTERS]
    chan = [i for i, a in enumerate(stored) if a in "CS"]
    if "Y" not in stored or "X" not in stored:
        raise ImageReadError(f"{path}: axes {stored!r} need Y (rows) and X (columns)")
    if len(plane) > 1:
        # several plane axes (t and z): keep one, refuse if the others have more than one entry
        big = [i for i in plane if arr.shape[i] > 1]
        if len(big) > 1:
            raise ImageReadError(
                f"{path}: {len(big)} plane axes ({stored}, shape {arr.shape}): a time series of "
                f"volumes; expand one volume (or one time series) per file"
            )
        keep = big[0] if big else plane[0]
        drop = tuple(i for i in plane if i != keep)
        arr = arr.squeeze(axis=drop)
        stored = "".join(a for i, a in enumerate(stored) if i not in drop)
        plane = [stored.index(a) for a in stored if a in _PLANE_LETTERS]
        chan = [i for i, a in enumerate(stored) if a in "CS"]
    if len(chan) > 1:
        raise ImageReadError(f"{path}: more than one channel axis in {stored!r}")
    order = plane + [stored.index("Y"), stored.index("X")] + chan
    arr = np.moveaxis(arr, order, range(len(order)))
    axes = ("Z" if plane else "") + "YX" + ("C" if chan else "")
    if axes == "ZYX" and arr.shape[0] == 1:
        arr, axes = arr[0], "YX"
    return ImageAxes(arr, axes)


def read_image_axes(path: str | os.PathLike, *, axes: str | None = None) -> ImageAxes:
    """Read a 2D image or a stack (multi-page TIFF, OME-TIFF, ImageJ hyperstack) with its axes.

    Parameters
    ----------
    path : str or PathLike
    axes : str, optional
        Letters naming the axes of the array as stored in the file (``Z`` or ``T`` planes,
        ``Y`` rows, ``X`` columns, ``C`` channels), e.g. ``'ZYX'`` for 3 pages that are planes,
        ``'CYX'`` for 3 pages that are channels, ``'YXC'`` for a colour image. Without it the
        file says: the TIFF's own axes (OME / ImageJ metadata, samples per pixel as channels,
        several grey pages as planes); other formats are 2D.

    Returns
    -------
    ImageAxes
        ``note`` says how an ambiguous file was read (3 or 4 grey pages: planes or channels?
        5 or fewer samples: channels or planes?) and how to say otherwise.

    Raises
    ------
    ImageReadError
        Naming the file, when it cannot be read or ``axes`` does not fit it.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    if path.suffix.lower() not in _TIFF:
        arr = read_image(path)
        if axes is None:
            stored = "YX" if arr.ndim == 2 else "YXC"
            out = _normalise_axes(path, arr, stored, False)
            if arr.ndim == 3 and arr.shape[2] <= 5 and arr.shape[2] not in (3, 4):
                out = ImageAxes(out.data, out.axes, _note(path, out, "YXZ"))
            return out
        return _normalise_axes(path, arr, axes, True)
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            arr = np.asarray(series.asarray())
            stored = series.axes
            n_pages = len(tf.pages)
            rgb = int(tf.pages[0].photometric) == 2  # the file says: RGB colour
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot read image (corrupt or truncated?): {exc}") from exc
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return _axes_of(path, arr, stored, axes, n_pages, rgb)


def _axes_of(path: Path, arr: np.ndarray, stored: str, axes: str | None, n_pages: int,
             rgb: bool) -> ImageAxes:
    """The TIFF array ``arr`` (file axes ``stored``) with its axes and, if ambiguous, a note."""
    if axes is not None:
        if len(axes) != arr.ndim:
            raise ImageReadError(
                f"{path}: --axes {axes} has {len(axes)} letters but the file holds an array of "
                f"shape {arr.shape} ({arr.ndim} axes)"
            )
        return _normalise_axes(path, arr, axes, True)
    out = _normalise_axes(path, arr, stored, False)
    if out.is_stack and out.data.shape[0] <= 5 and not out.axes.endswith("C"):
        # a few grey pages: planes (read so) or the channels of one image?
        flip = "C" + stored.upper().replace("Q", "").replace("I", "").replace("Z", "").replace(
            "T", "")
        out = ImageAxes(out.data, out.axes, _note(path, out, flip))
    elif (not out.is_stack and out.axes == "YXC" and out.data.shape[2] <= 5 and n_pages == 1
          and not (rgb and out.data.shape[2] in (3, 4))):
        flip = stored.upper().replace("S", "Z").replace("C", "Z")
        out = ImageAxes(out.data, out.axes, _note(path, out, flip))
    return out


def probe_image_axes(path: str | os.PathLike, *, axes: str | None = None) -> ImageAxes:
    """:func:`read_image_axes` without reading a TIFF's pixels: ``data`` is a read-only view of
    the right shape holding zeros (for planning a run: stack or 2D image, how many planes)."""
    path = Path(path)
    if path.suffix.lower() not in _TIFF or not path.is_file():
        return read_image_axes(path, axes=axes)
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            shape, stored = tuple(series.shape), series.axes
            n_pages = len(tf.pages)
            rgb = int(tf.pages[0].photometric) == 2
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot read image (corrupt or truncated?): {exc}") from exc
    return _axes_of(path, np.broadcast_to(np.zeros((), np.uint8), shape), stored, axes,
                    n_pages, rgb)


def _note(path: Path, read: ImageAxes, other: str) -> str:
    return (f"{path.name}: read as {read.describe()} (axes {read.axes}); if that is wrong, "
            f"pass --axes {other}")


def write_label_stack(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write a (Z, M, N) label stack atomically as a multi-page TIFF, one grey page per plane.

    Pixel values are the class ids (uint8 / uint16 / uint32).
    """
    import tifffile

    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise ValueError(f"a label stack must be (planes, rows, cols), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
        raise ValueError("labels must be non-negative integer class ids")
    hi = int(arr.max()) if arr.size else 0
    dtype = np.uint8 if hi < 256 else np.uint16 if hi < 65536 else np.uint32
    with atomic_open(path, "wb") as fh:
        tifffile.imwrite(fh, arr.astype(dtype, copy=False), photometric="minisblack",
                         compression="zlib")
    return Path(path)


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
    if path.suffix.lower() in _TIFF:
        try:
            read = read_image_axes(path)
        except ImageReadError:
            read = None  # the reader below says what is wrong
        if read is not None and read.is_stack:
            raise ImageReadError(
                f"{path}: expected a 2D image, but the file is {read.describe()} (axes "
                f"{read.axes}); expand it as a volume (a points file with planes), or pass "
                f"--axes CYX if the planes are the channels of one image"
            )
        if read is not None:
            return read.data
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
