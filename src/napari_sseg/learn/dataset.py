"""Training targets of a survey model and class-balanced pixel samples.

A target is an (M, N) int32 map of class ids with -1 for pixels that teach nothing. It comes
from one of three sources:

* ``expanded``: the expansion's pseudo-labels (:func:`napari_sseg.core.expand.expand`) of the
  image's points, optionally only where its confidence reaches a threshold (the point pixels are
  always labelled), as LSSQPS trains on superpixel pseudo-labels;
* ``points``: the point pixels alone (the comparison LSSQPS makes);
* ``mask``: a dense class-index mask, ``ignore_index`` (255) ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.points import PointSet

__all__ = ["IGNORE", "LABEL_SOURCES", "TrainingItem", "target_from_points",
           "target_from_expansion", "target_from_mask", "sample_pixels"]

IGNORE = -1
LABEL_SOURCES = ("expanded", "points", "mask")


@dataclass
class TrainingItem:
    """One training image and where its labels come from.

    Attributes
    ----------
    path : Path
        The image file (its name is recorded in the card).
    points : PointSet, optional
        Its class points (for the ``expanded`` and ``points`` sources).
    mask : Path, optional
        Its dense class-index mask (``mask`` source).
    image : ndarray, optional
        The image itself, when already in memory (napari layers); else read from ``path``.
    clip : bool
        Clip points outside the image onto its border (else an error names them).
    where : str, optional
        Names the points in error messages (e.g. the points file and the image).
    """

    path: Path
    points: PointSet | None = None
    mask: Path | None = None
    image: np.ndarray | None = None
    clip: bool = False
    where: str | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name

    def bounded_points(self, shape: tuple[int, int]) -> PointSet | None:
        """The points, clipped onto an image of ``shape`` or checked to lie inside it."""
        if self.points is None or self.clip:
            return None if self.points is None else self.points.clipped(shape)
        self.points.check_bounds(shape, source=self.where or f"points of {self.name}")
        return self.points

    def load(self) -> np.ndarray:
        """The image: the array given, else read from :attr:`path`."""
        if self.image is not None:
            return self.image
        from ..io.images import read_image

        return read_image(self.path)


def target_from_points(shape: tuple[int, int], points: PointSet) -> np.ndarray:
    """(M, N) int32 map: the class of each point pixel, -1 elsewhere (later points win)."""
    target = np.full(shape[:2], IGNORE, dtype=np.int32)
    rows, cols = points.pixel_indices()
    target[rows, cols] = points.labels
    return target


def target_from_expansion(
    image: np.ndarray,
    points: PointSet,
    *,
    min_confidence: float = 0.0,
    expansion=None,
) -> np.ndarray:
    """Pseudo-labels of the expansion of ``points``; pixels below ``min_confidence`` are -1.

    Parameters
    ----------
    image : (M, N[, C]) ndarray
    points : PointSet
    min_confidence : float
        Pixels whose confidence is below this are ignored (0: every pixel labelled). Point
        pixels are always labelled with their class.
    expansion : Expansion, optional
        An expansion already computed for these points (else :func:`expand` runs).
    """
    if expansion is None:
        from ..core.expand import expand

        expansion = expand(image, points)
    target = expansion.labels.astype(np.int32)
    if min_confidence > 0:
        target[expansion.confidence < min_confidence] = IGNORE
    rows, cols = points.pixel_indices()
    target[rows, cols] = points.labels
    return target


def target_from_mask(mask: np.ndarray | str | os.PathLike, *, ignore_index: int = 255,
                     shape: tuple[int, int] | None = None, where: str = "mask") -> np.ndarray:
    """(M, N) int32 class ids of a dense mask, ``ignore_index`` as -1.

    Raises
    ------
    ValueError
        If the mask is not single-channel or its shape differs from ``shape``.
    """
    if not isinstance(mask, np.ndarray):
        from ..io.images import read_label_image

        where = str(mask)
        mask = read_label_image(mask)
    if mask.ndim != 2:
        raise ValueError(f"{where}: a mask must be a single-channel image, got shape {mask.shape}")
    if shape is not None and mask.shape != tuple(shape[:2]):
        raise ValueError(f"{where}: mask of {mask.shape[0]} x {mask.shape[1]} pixels does not "
                         f"match its image of {shape[0]} x {shape[1]}")
    target = mask.astype(np.int32)
    target[mask == ignore_index] = IGNORE
    return target


def sample_pixels(
    target: np.ndarray, n: int, rng: np.random.Generator, *, balanced: bool = True
) -> tuple[np.ndarray, ...]:
    """Up to ``n`` labelled pixels of ``target``.

    Parameters
    ----------
    target : (M, N) ndarray of int
        Class ids, -1 where unlabelled.
    n : int
    rng : numpy.random.Generator
    balanced : bool
        The same number per class where possible (True), or uniformly over the labelled
        pixels, so each class in proportion to its area (False).

    Returns
    -------
    rows, cols : (S,) ndarray of int64
    labels : (S,) ndarray of int32
    """
    flat = target.ravel()
    labelled = np.flatnonzero(flat >= 0)
    if not labelled.size:
        return (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.int32),)
    if not balanced:
        idx = np.sort(rng.choice(labelled, size=n, replace=False)) if n < labelled.size else labelled
        rows, cols = np.divmod(idx, target.shape[1])
        return rows, cols, flat[idx].astype(np.int32)
    cls = flat[labelled]
    classes, counts = np.unique(cls, return_counts=True)
    # equal share per class; classes with fewer pixels give their rest to the others
    quota = np.zeros(classes.size, dtype=np.int64)
    left, open_ = n, np.ones(classes.size, bool)
    while left > 0 and open_.any():
        share = max(1, left // int(open_.sum()))
        add = np.minimum(counts - quota, share) * open_
        quota += add
        left -= int(add.sum())
        open_ &= quota < counts
        if not add.any():
            break
    picks = []
    order = np.argsort(cls, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    for k in range(classes.size):
        members = labelled[order[starts[k]:starts[k + 1]]]
        picks.append(rng.choice(members, size=int(quota[k]), replace=False)
                     if quota[k] < members.size else members)
    idx = np.sort(np.concatenate(picks))
    rows, cols = np.divmod(idx, target.shape[1])
    return rows, cols, flat[idx].astype(np.int32)
