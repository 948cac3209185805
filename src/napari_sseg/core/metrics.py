"""Segmentation metrics from one confusion matrix accumulated over a set of images."""

from __future__ import annotations

import numpy as np

__all__ = ["IGNORE", "ConfusionMatrix", "segmentation_scores"]

IGNORE = 255


class ConfusionMatrix:
    """Confusion matrix accumulated over images; rows are ground truth, columns predictions.

    Pixels whose ground truth equals ``ignore_index`` are skipped. Predictions of classes absent
    from the ground truth are kept (they count as errors of the true class).

    Parameters
    ----------
    ignore_index : int, optional
        Ground-truth value that marks pixels to skip (255 by default).
    """

    def __init__(self, ignore_index: int = IGNORE):
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((0, 0), dtype=np.int64)

    def _grow(self, size: int) -> None:
        if size > self.matrix.shape[0]:
            grown = np.zeros((size, size), dtype=np.int64)
            n = self.matrix.shape[0]
            grown[:n, :n] = self.matrix
            self.matrix = grown

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
        valid = gt != self.ignore_index
        g = gt[valid].astype(np.int64, copy=False)
        p = pred[valid].astype(np.int64, copy=False)
        if g.size == 0:
            return
        if g.min() < 0 or p.min() < 0:
            raise ValueError("class indices must be non-negative")
        size = int(max(g.max(), p.max())) + 1
        self._grow(size)
        n = self.matrix.shape[0]
        self.matrix += np.bincount(g * n + p, minlength=n * n).reshape(n, n)

    def scores(self) -> dict:
        """Pixel accuracy, mean class accuracy, mIoU and per-class IoU.

        Means run over classes present in the ground truth.
        """
        return segmentation_scores(self.matrix)


def segmentation_scores(matrix: np.ndarray) -> dict:
    """Scores from a confusion matrix (rows ground truth, columns prediction).

    Parameters
    ----------
    matrix : (K, K) ndarray of int

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
        "per_class_iou": {int(c): float(v) for c, v in zip(present, iou)},
        "per_class_accuracy": {int(c): float(v) for c, v in zip(present, acc)},
        "pixels": int(total),
    }
