"""Corrections files: partial label images (class id where painted, 255 / 65535 = not corrected).

A corrections file for image ``<stem>.<ext>`` is ``DIR/<stem>.png`` (a ``.tif`` / ``.tiff`` is
read too). Its pixel values are the class ids of the output masks; the largest value of the
file's dtype (255 for 8-bit, 65535 for 16-bit images) marks the pixels that were not corrected.
An image without a file in the folder has no corrections. The napari widget and the command line
write and read the same format.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.corrections import corrections_dtype, corrections_ignore_value, painted_mask
from .images import ImageReadError, read_label_image, write_label_image

__all__ = [
    "CORRECTIONS_SUFFIXES",
    "CorrectionsFileError",
    "corrections_file",
    "read_corrections",
    "write_corrections",
]

CORRECTIONS_SUFFIXES = (".png", ".tif", ".tiff")


class CorrectionsFileError(ValueError):
    """A corrections file that cannot be used (unreadable, wrong size, unknown class ids)."""


def corrections_file(folder: str | os.PathLike, image: str | os.PathLike) -> Path | None:
    """The corrections file of ``image`` in ``folder`` (``<stem>.png``, ``.tif``, ``.tiff``), or None."""
    folder = Path(folder)
    stem = Path(image).stem
    for suffix in CORRECTIONS_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def read_corrections(
    path: str | os.PathLike,
    shape: tuple[int, int] | None = None,
    *,
    classes=None,
) -> np.ndarray:
    """Read a corrections file.

    Parameters
    ----------
    path : str or PathLike
    shape : (int, int), optional
        (rows, cols) of the image it corrects; another size is an error.
    classes : iterable of int, optional
        The known class ids; a painted id outside them is an error.

    Returns
    -------
    (M, N) ndarray of uint8 or uint16
        Class ids where painted, 255 (uint8) or 65535 (uint16) elsewhere.

    Raises
    ------
    CorrectionsFileError
        Naming the file: unreadable or not a single-channel integer image, of another size than
        the image, or painted with class ids that are not known.
    """
    path = Path(path)
    try:
        arr = read_label_image(path)
    except ImageReadError as exc:
        raise CorrectionsFileError(f"corrections {exc}") from exc
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and arr.min() >= 0:
        # some readers give 16-bit PNGs as 32-bit signed images: keep the file's unsigned type
        hi = int(arr.max())
        if hi > 65535:
            raise CorrectionsFileError(
                f"{path}: corrections hold value {hi}; expected 8-bit (255 = not corrected) or "
                f"16-bit (65535 = not corrected) class ids")
        arr = arr.astype(np.uint8 if hi <= 255 else np.uint16)
    if shape is not None and arr.shape != tuple(shape):
        raise CorrectionsFileError(
            f"{path}: corrections of {arr.shape[0]} rows x {arr.shape[1]} columns do not match "
            f"the image of {shape[0]} rows x {shape[1]} columns")
    painted = painted_mask(arr)
    if painted.any():
        ids = np.unique(arr[painted])
        if ids.min() < 0:
            raise CorrectionsFileError(f"{path}: negative class id {int(ids.min())} in corrections")
        if classes is not None:
            known = np.asarray(sorted(int(c) for c in classes), dtype=np.int64)
            unknown = np.setdiff1d(ids.astype(np.int64), known)
            if unknown.size:
                shown = ", ".join(str(int(v)) for v in unknown[:10])
                raise CorrectionsFileError(
                    f"{path}: painted class id(s) {shown} are not among the classes "
                    f"{known.tolist()} (not corrected = {corrections_ignore_value(arr.dtype)})")
    return arr


def write_corrections(path: str | os.PathLike, corrections: np.ndarray, *,
                      max_id: int | None = None) -> Path:
    """Write a corrections image atomically as a partial label image.

    Parameters
    ----------
    path : str or PathLike
        ``.png`` (or ``.tif``).
    corrections : (M, N) ndarray of int
        Class ids where painted, the dtype's ignore value elsewhere (see
        :mod:`napari_sseg.core.corrections`).
    max_id : int, optional
        Largest class id of the class table: 8-bit files (255 = not corrected) when it is
        below 255, else 16-bit (65535 = not corrected).

    Returns
    -------
    Path
    """
    corr = np.asarray(corrections)
    if corr.ndim != 2:
        raise ValueError(f"corrections must be a 2D partial label image, got shape {corr.shape}")
    painted = painted_mask(corr)
    top = int(corr[painted].max()) if painted.any() else 0
    dt = corrections_dtype(max(top, int(max_id) if max_id is not None else 0))
    if dt.itemsize > 2:
        raise ValueError(f"{path}: class id {top} does not fit a 16-bit corrections image")
    out = np.full(corr.shape, corrections_ignore_value(dt), dtype=dt)
    out[painted] = corr[painted]
    return write_label_image(path, out)
