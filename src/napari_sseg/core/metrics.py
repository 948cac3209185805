"""Segmentation metrics from one confusion matrix accumulated over a set of images, and the
choice of the ground-truth value that means "not annotated" (the ignore index)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["IGNORE", "ConfusionMatrix", "IgnoreChoice", "choose_ignore_index",
           "scoring_problems", "segmentation_scores", "value_counts"]

IGNORE = 255
_DENSE_LIMIT = 4096  # largest class id for which ConfusionMatrix.matrix is built densely


class ConfusionMatrix:
    """Confusion matrix accumulated over images; rows are ground truth, columns predictions.

    Pixels whose ground truth equals ``ignore_index`` are skipped. Predictions of classes absent
    from the ground truth are kept (they count as errors of the true class). The counts are kept
    over the class ids seen (``ids``, ``counts``), so ids up to 2**32 cost no memory.

    Parameters
    ----------
    ignore_index : int or None, optional
        Ground-truth value that marks pixels to skip (255 by default); ``None`` skips nothing.
    """

    def __init__(self, ignore_index: int | None = IGNORE):
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.ids = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros((0, 0), dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """Dense (K, K) matrix indexed by class id, K = largest id seen + 1.

        Raises
        ------
        ValueError
            If an id above 4095 was seen (use ``ids`` and ``counts``).
        """
        size = int(self.ids[-1]) + 1 if self.ids.size else 0
        if size > _DENSE_LIMIT:
            raise ValueError(f"class id {size - 1} is too large for a dense confusion matrix; "
                             f"use .ids and .counts")
        dense = np.zeros((size, size), dtype=np.int64)
        dense[np.ix_(self.ids, self.ids)] = self.counts
        return dense

    def _merge(self, ids: np.ndarray, counts: np.ndarray) -> None:
        union = np.union1d(self.ids, ids)
        if union.size != self.ids.size:
            grown = np.zeros((union.size, union.size), dtype=np.int64)
            pos = np.searchsorted(union, self.ids)
            grown[np.ix_(pos, pos)] = self.counts
            self.ids, self.counts = union, grown
        pos = np.searchsorted(self.ids, ids)
        self.counts[np.ix_(pos, pos)] += counts

    def update(self, ground_truth: np.ndarray, prediction: np.ndarray) -> None:
        """Add one image.

        Parameters
        ----------
        ground_truth, prediction : (M, N) ndarray of int
            Class-index images of the same shape.

        Raises
        ------
        ValueError
            If the shapes differ or values are negative.
        """
        gt = np.asarray(ground_truth)
        pred = np.asarray(prediction)
        if gt.shape != pred.shape:
            raise ValueError(
                f"ground truth of shape {gt.shape} and prediction of shape {pred.shape} differ"
            )
        if self.ignore_index is None:
            g, p = gt.ravel(), pred.ravel()
        else:
            valid = gt != self.ignore_index
            g, p = gt[valid], pred[valid]
        if g.size == 0:
            return
        g = g.astype(np.int64, copy=False)
        p = p.astype(np.int64, copy=False)
        if g.min() < 0 or p.min() < 0:
            raise ValueError("class indices must be non-negative")
        top = int(max(g.max(), p.max()))
        if top < 1 << 20:  # ids present through a look-up table (no sort)
            present = np.flatnonzero(np.bincount(g, minlength=top + 1)
                                     + np.bincount(p, minlength=top + 1))
            lut = np.zeros(top + 1, dtype=np.int64)
            lut[present] = np.arange(present.size)
            gi, pi = lut[g], lut[p]
        else:
            present, inv = np.unique(np.concatenate([g, p]), return_inverse=True)
            gi, pi = inv[: g.size], inv[g.size:]
        n = present.size
        self._merge(present, np.bincount(gi * n + pi, minlength=n * n).reshape(n, n))

    def add(self, other: "ConfusionMatrix") -> None:
        """Add the counts of ``other`` (accumulated with the same ``ignore_index``)."""
        self._merge(other.ids, other.counts)

    def values(self) -> tuple[dict[int, int], dict[int, int]]:
        """Pixel counts per ground-truth value and per predicted value among the counted
        pixels."""
        gt = self.counts.sum(axis=1)
        pred = self.counts.sum(axis=0)
        return ({int(i): int(c) for i, c in zip(self.ids, gt) if c},
                {int(i): int(c) for i, c in zip(self.ids, pred) if c})

    def without(self, ignore_index: int | None) -> "ConfusionMatrix":
        """A copy that skips the ground-truth value ``ignore_index`` (rows of that value are
        dropped), for a matrix accumulated with ``ignore_index=None``."""
        out = ConfusionMatrix(ignore_index)
        out.ids, out.counts = self.ids.copy(), self.counts.copy()
        if ignore_index is not None:
            out.counts[self.ids == ignore_index, :] = 0
        return out

    def scores(self) -> dict:
        """Pixel accuracy, mean class accuracy, mIoU and per-class IoU.

        Means run over classes present in the ground truth.
        """
        return segmentation_scores(self.counts, ids=self.ids)


def segmentation_scores(matrix: np.ndarray, *, ids=None) -> dict:
    """Scores from a confusion matrix (rows ground truth, columns prediction).

    Parameters
    ----------
    matrix : (K, K) ndarray of int
    ids : (K,) array_like of int, optional
        Class id of each row and column (default: 0..K-1).

    Returns
    -------
    dict
        ``pixel_accuracy``, ``mean_class_accuracy``, ``miou`` (floats in [0, 1], NaN when no
        pixel was scored), ``per_class_iou`` and ``per_class_accuracy`` (dicts keyed by the
        classes present in the ground truth) and ``pixels`` (number scored).
    """
    m = np.asarray(matrix, dtype=np.float64)
    total = m.sum()
    tp = np.diag(m)
    gt_count = m.sum(axis=1)
    pred_count = m.sum(axis=0)
    present = np.flatnonzero(gt_count > 0)
    ids = np.arange(m.shape[0]) if ids is None else np.asarray(ids, dtype=np.int64)
    if total == 0:
        nan = float("nan")
        return {"pixel_accuracy": nan, "mean_class_accuracy": nan, "miou": nan,
                "per_class_iou": {}, "per_class_accuracy": {}, "pixels": 0}
    acc = tp[present] / gt_count[present]
    iou = tp[present] / (gt_count[present] + pred_count[present] - tp[present])
    return {
        "pixel_accuracy": float(tp.sum() / total),
        "mean_class_accuracy": float(acc.mean()),
        "miou": float(iou.mean()),
        "per_class_iou": {int(ids[c]): float(v) for c, v in zip(present, iou)},
        "per_class_accuracy": {int(ids[c]): float(v) for c, v in zip(present, acc)},
        "pixels": int(total),
    }


def value_counts(labels: np.ndarray) -> dict[int, int]:
    """Pixel count of each value of a class-index image."""
    arr = np.asarray(labels).ravel()
    if arr.size and arr.min() >= 0 and arr.max() < 1 << 20:
        counts = np.bincount(arr.astype(np.int64, copy=False))
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    vals, counts = np.unique(arr, return_counts=True)
    return {int(v): int(c) for v, c in zip(vals, counts)}


@dataclass(frozen=True)
class IgnoreChoice:
    """The ground-truth value skipped when scoring, and why.

    Attributes
    ----------
    index : int or None
        The value skipped (``None``: every pixel is scored).
    note : str
        What was assumed, in words for the user (empty when nothing had to be assumed).
    warn : bool
        Whether the note is a guess the user should check (a warning) rather than information.
    """

    index: int | None
    note: str = ""
    warn: bool = False


def choose_ignore_index(
    gt_counts: Mapping[int, int],
    pred_counts: Mapping[int, int] | None = None,
    *,
    requested: int | str | None = "auto",
    option: str = "--ignore-index",
) -> IgnoreChoice:
    """Decide which ground-truth value means "not annotated".

    255 is the usual "unlabelled" value of segmentation data sets, but it is also the
    foreground of the common 0/255 binary masks: skipping it there scores the background only,
    and a prediction of all zeros scores an mIoU of 1.0. With ``requested='auto'``:

    * no 255 in the ground truth: nothing is skipped;
    * ground truth of 0 and 255 and nothing else: a binary mask, 255 is the foreground class
      (warned);
    * predictions that contain 255: 255 is a class, nothing is skipped (warned);
    * otherwise 255 is skipped as "not annotated" (said, and warned when it covers more than
      half of the ground truth).

    Parameters
    ----------
    gt_counts, pred_counts : mapping of int to int
        Pixel count per value over all ground-truth (and predicted) images.
    requested : int, 'auto', 'none' or None
        The user's choice: an int is used as it is, ``'none'``/``None`` skips nothing.
    option : str
        How the user sets it, for the notes.

    Returns
    -------
    IgnoreChoice
    """
    if requested is None or (isinstance(requested, str) and requested.lower() == "none"):
        return IgnoreChoice(None)
    if not (isinstance(requested, str) and requested.lower() == "auto"):
        return IgnoreChoice(int(requested))
    total = sum(gt_counts.values())
    n255 = int(gt_counts.get(IGNORE, 0))
    if not n255:
        return IgnoreChoice(None)
    share = n255 / total if total else 1.0
    if set(gt_counts) == {0, IGNORE}:
        return IgnoreChoice(None, (
            f"the ground truth holds only the values 0 and 255 ({100 * share:.1f}% 255): read as "
            f"binary masks with 255 = foreground, a class that is scored; pass {option} 255 if "
            f"255 marks pixels that are not annotated"), warn=True)
    if pred_counts and pred_counts.get(IGNORE, 0):
        return IgnoreChoice(None, (
            f"the predictions contain the value 255, so 255 is read as a class and scored "
            f"(it covers {100 * share:.1f}% of the ground truth); pass {option} 255 if 255 marks "
            f"pixels that are not annotated"), warn=True)
    return IgnoreChoice(IGNORE, (
        f"ground-truth value 255 read as 'not annotated': {100 * share:.1f}% of its pixels are "
        f"not scored; pass {option} none to score 255 as a class"), warn=share > 0.5)


def scoring_problems(gt_counts: Mapping[int, int], ignore_index: int | None) -> str | None:
    """Why scores over ground truth with ``gt_counts`` would mislead, or ``None``.

    Nothing left to score (every pixel is the ignore value) and a single class left (then a
    prediction of that class everywhere scores 1.0) are the two cases.
    """
    scored = {v: c for v, c in gt_counts.items() if c and v != ignore_index}
    if not scored:
        what = (f"every ground-truth pixel is {ignore_index} (not annotated)"
                if ignore_index is not None else "the ground truth has no pixels")
        return f"nothing to score: {what}"
    if len(scored) == 1:
        (only,) = scored
        return (f"the scored ground truth holds one class only ({only}): a prediction of "
                f"{only} everywhere scores 1.0, so the scores say little")
    return None
