"""Corrections: pixels a user painted with a class, kept exactly and used as evidence.

A corrections image is a partial label image of the image's shape: the class id where the user
painted, an *ignore* value everywhere else. The ignore value is the largest value of an unsigned
dtype (255 for uint8, as in the ground-truth masks; 65535 for uint16; 2**32 - 1 for uint32) and
-1 for signed integers.

The expansion (:func:`napari_sseg.core.expand.expand` and the hybrid) takes corrections as
already-decided pixels: they keep their class in the output, every connected painted piece
seeds the region graph, and a class-balanced sample of them trains the appearance model.

This module also holds the simulated user of the correction loop (the *oracle*): it paints a
disc of the true class at the innermost pixel of the largest wrong region of a mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DiscCorrection",
    "check_corrections",
    "corrections_dtype",
    "corrections_ignore_value",
    "disc_mask",
    "empty_corrections",
    "kept_fraction",
    "merge_known",
    "oracle_disc",
    "paint_disc",
    "painted_mask",
]


def corrections_ignore_value(dtype: np.dtype | type) -> int:
    """The "not corrected" value of a corrections image of ``dtype``.

    Parameters
    ----------
    dtype : numpy dtype
        An integer dtype.

    Returns
    -------
    int
        255 for uint8, 65535 for uint16, 2**32 - 1 for uint32 (the largest value of unsigned
        dtypes) and -1 for signed integers.

    Raises
    ------
    ValueError
        If ``dtype`` is not an integer dtype.
    """
    dt = np.dtype(dtype)
    if dt.kind == "u":
        return int(np.iinfo(dt).max)
    if dt.kind == "i":
        return -1
    raise ValueError(f"corrections must be an integer image, got dtype {dt}")


def corrections_dtype(max_class_id: int) -> np.dtype:
    """Smallest dtype whose ignore value is above ``max_class_id`` (uint8, uint16 or uint32)."""
    if max_class_id < 255:
        return np.dtype(np.uint8)
    if max_class_id < 65535:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def empty_corrections(shape: tuple[int, ...], max_class_id: int = 0) -> np.ndarray:
    """A corrections image of ``shape`` with nothing painted.

    Parameters
    ----------
    shape : tuple of int
    max_class_id : int
        Largest class id that will be painted (decides uint8, uint16 or uint32).
    """
    dt = corrections_dtype(max_class_id)
    return np.full(shape, corrections_ignore_value(dt), dtype=dt)


def painted_mask(corrections: np.ndarray) -> np.ndarray:
    """Boolean image of the painted (corrected) pixels of ``corrections``."""
    corr = np.asarray(corrections)
    return corr != corrections_ignore_value(corr.dtype)


def check_corrections(
    corrections: np.ndarray,
    shape: tuple[int, int],
    *,
    classes: np.ndarray | list[int] | None = None,
    source: str = "corrections",
) -> np.ndarray:
    """Validate a corrections image against an image of ``shape`` (and known class ids).

    Parameters
    ----------
    corrections : (M, N) ndarray of int
    shape : (int, int)
        (rows, cols) of the image.
    classes : array_like of int, optional
        The class ids that may be painted; any other painted id is an error.
    source : str
        Name used in error messages (a file name or layer name).

    Returns
    -------
    (M, N) ndarray
        ``corrections`` itself (not copied).

    Raises
    ------
    ValueError
        Naming ``source``: not 2D, another shape, not integer, negative ids other than -1 in a
        signed image, or ids not in ``classes``.
    """
    corr = np.asarray(corrections)
    if corr.ndim != 2:
        raise ValueError(f"{source}: expected a 2D partial label image, got shape {corr.shape}")
    if corr.shape != tuple(shape):
        raise ValueError(
            f"{source}: corrections of {corr.shape[0]} rows x {corr.shape[1]} columns do not "
            f"match the image of {shape[0]} rows x {shape[1]} columns"
        )
    if corr.dtype == bool or not np.issubdtype(corr.dtype, np.integer):
        raise ValueError(f"{source}: corrections must be an integer image, got dtype {corr.dtype}")
    painted = painted_mask(corr)
    ids = np.unique(corr[painted]) if painted.any() else np.zeros(0, dtype=np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError(
            f"{source}: negative class id {int(ids.min())} (only -1 means 'not corrected' in a "
            f"signed image)"
        )
    if classes is not None and ids.size:
        unknown = np.setdiff1d(ids, np.asarray(list(classes), dtype=np.int64))
        if unknown.size:
            shown = ", ".join(str(int(v)) for v in unknown[:10])
            raise ValueError(
                f"{source}: painted class id(s) {shown} are not among the classes "
                f"{sorted(int(c) for c in classes)}"
            )
    return corr


def merge_known(
    known: np.ndarray | None, corrections: np.ndarray | None, shape: tuple[int, int]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Decided-pixel map (class id, -1 undecided) with the painted corrections on top.

    Parameters
    ----------
    known : (M, N) ndarray of int, optional
        Pixels decided by other means (for example SAM2 masks), -1 elsewhere.
    corrections : (M, N) ndarray of int, optional
        Corrections image (see the module docstring).
    shape : (int, int)

    Returns
    -------
    known : (M, N) ndarray of int32 or None
        A new array when corrections are painted, else ``known`` as given.
    painted : (M, N) ndarray of bool or None
        The painted pixels (None when nothing is painted).
    """
    if corrections is None:
        return known, None
    corr = check_corrections(corrections, shape)
    painted = painted_mask(corr)
    if not painted.any():
        return known, None
    merged = (np.full(shape, -1, dtype=np.int32) if known is None
              else np.asarray(known).astype(np.int32, copy=True))
    merged[painted] = corr[painted]
    return merged, painted


def disc_mask(shape: tuple[int, int], center: tuple[int, int], radius: float) -> tuple[slice, slice, np.ndarray]:
    """Pixels of a disc of ``radius`` around ``center`` (row, col), clipped to ``shape``.

    Returns
    -------
    rows, cols : slice
        The disc's bounding box inside the image.
    inside : ndarray of bool
        The disc within that box (pixel centres at distance <= ``radius``).
    """
    r0, c0 = int(center[0]), int(center[1])
    rad = int(np.floor(radius))
    rs = slice(max(0, r0 - rad), min(shape[0], r0 + rad + 1))
    cs = slice(max(0, c0 - rad), min(shape[1], c0 + rad + 1))
    rr, cc = np.ogrid[rs, cs]
    return rs, cs, (rr - r0) ** 2 + (cc - c0) ** 2 <= radius**2


def paint_disc(image: np.ndarray, center: tuple[int, int], radius: float, value: int) -> np.ndarray:
    """A copy of ``image`` with a disc of ``value`` painted at ``center`` (row, col)."""
    out = np.array(image, copy=True)
    rs, cs, inside = disc_mask(out.shape[:2], center, radius)
    out[rs, cs][inside] = value
    return out


@dataclass(frozen=True)
class DiscCorrection:
    """One simulated correction: a disc of ``label`` at ``center`` (row, col).

    Attributes
    ----------
    center : (int, int)
    label : int
        True class at the centre.
    radius : float
    region_size : int
        Pixels of the wrong region the disc was placed in.
    """

    center: tuple[int, int]
    label: int
    radius: float
    region_size: int


def oracle_disc(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    radius: float = 8.0,
    ignore_index: int = 255,
) -> DiscCorrection | None:
    """The simulated user's next correction of ``prediction``.

    The wrong pixels (annotated and predicted as another class) are split into 4-connected
    regions; in the largest one the user paints a disc of ``radius`` at its innermost pixel
    (the maximum of its Euclidean distance transform; ties: the first in row-major order) with
    the true class of that pixel.

    Parameters
    ----------
    prediction, ground_truth : (M, N) ndarray of int
    radius : float
        Disc radius in pixels.
    ignore_index : int
        Unannotated ground-truth value (never wrong, never painted from).

    Returns
    -------
    DiscCorrection or None
        None when no annotated pixel is wrong.
    """
    from scipy import ndimage as ndi

    pred = np.asarray(prediction)
    gt = np.asarray(ground_truth)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction of shape {pred.shape} and ground truth of shape {gt.shape} differ")
    wrong = (pred != gt) & (gt != ignore_index)
    if not wrong.any():
        return None
    comp, n = ndi.label(wrong)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    sizes[0] = 0
    biggest = int(np.argmax(sizes))
    objects = ndi.find_objects(comp)[biggest - 1]
    # pad the box by one so the distance transform sees the region's outside on every side
    rs = slice(max(0, objects[0].start - 1), min(gt.shape[0], objects[0].stop + 1))
    cs = slice(max(0, objects[1].start - 1), min(gt.shape[1], objects[1].stop + 1))
    region = comp[rs, cs] == biggest
    dist = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    r, c = r + rs.start, c + cs.start
    return DiscCorrection((int(r), int(c)), int(gt[r, c]), float(radius), int(sizes[biggest]))


def kept_fraction(labels: np.ndarray, corrections: np.ndarray) -> float:
    """Share of the painted pixels of ``corrections`` whose class ``labels`` kept (1.0 if none)."""
    painted = painted_mask(corrections)
    if not painted.any():
        return 1.0
    return float((np.asarray(labels)[painted] == np.asarray(corrections)[painted]).mean())
