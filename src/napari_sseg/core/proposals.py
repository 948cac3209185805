"""The mask-proposer protocol, and pure-numpy helpers shared by every proposer.

The core defines what it needs from a promptable segmenter; the backends (SAM2's image and video
predictors, fakes in tests) implement it, so no import runs from the core to the backends.

A mask proposer embeds an image once (:meth:`MaskProposer.set_image`) and then, for a batch of
prompt points, returns candidate masks as *low-resolution logits* over the whole image plus a
predicted quality (IoU) per candidate (:meth:`MaskProposer.predict`). Nothing is upsampled there:
the fusion step scores candidates on the low-resolution grid and brings only the kept ones to full
resolution, as a bounding-box crop (:func:`upsample_crop`). This module imports numpy only.

Grid convention
---------------
A logit grid of shape (h, w) covers the whole (M, N) image, stretched independently along rows and
columns (SAM2 resizes every image to a 1024 x 1024 square, its low-resolution masks are 256 x 256).
Grid cell (i, j) is centred on image pixel ``((i + 0.5) * M / h - 0.5, (j + 0.5) * N / w - 0.5)``;
values between cells are bilinear, exactly as ``torch.nn.functional.interpolate(...,
mode="bilinear", align_corners=False)``, which SAM2 uses to bring its masks to the image size. A
proposer may return a grid of the image's own shape, in which case nothing is interpolated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Candidates",
    "MaskCrop",
    "MaskProposer",
    "VolumeProposer",
    "iter_candidates",
    "sample_grid",
    "upsample_crop",
]


@dataclass(frozen=True)
class Candidates:
    """Candidate masks for a batch of prompt points.

    Attributes
    ----------
    logits : (B, K, h, w) ndarray of float32
        Low-resolution mask logits over the whole image (see the module's grid convention);
        a pixel belongs to a mask where the (interpolated) logit is > 0.
    iou : (B, K) ndarray of float32
        Predicted quality (IoU) of every candidate.
    image_shape : tuple of int
        (M, N) of the image the logits cover.
    """

    logits: np.ndarray
    iou: np.ndarray
    image_shape: tuple[int, int]

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits, dtype=np.float32)
        iou = np.asarray(self.iou, dtype=np.float32)
        if logits.ndim != 4 or iou.shape != logits.shape[:2]:
            raise ValueError(
                f"candidates need logits (B, K, h, w) and iou (B, K); got {logits.shape} "
                f"and {iou.shape}"
            )
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "iou", iou)
        shape = (int(self.image_shape[0]), int(self.image_shape[1]))
        object.__setattr__(self, "image_shape", shape)


@runtime_checkable
class MaskProposer(Protocol):
    """What the hybrid expansion needs from a promptable segmenter.

    A proposer may also offer ``predict_batches(batches)``, an iterator of :class:`Candidates`
    for a sequence of ``(points_rc, negatives_rc)`` batches that decodes ahead on its own
    workers (see :func:`iter_candidates`).

    Attributes
    ----------
    name : str
        Short description for logs and run records (model, device).
    """

    name: str

    def set_image(self, image: np.ndarray) -> None:
        """Embed ``image`` ((M, N) or (M, N, C), any dtype) for the following predictions.

        Implementations cache embeddings, so setting the same image again is cheap.
        """

    def predict(
        self,
        points_rc: np.ndarray,
        negatives_rc: Sequence[np.ndarray] | None = None,
    ) -> Candidates:
        """Candidate masks for each positive point.

        Parameters
        ----------
        points_rc : (B, 2) ndarray
            One positive click per prompt, (row, col) pixel coordinates.
        negatives_rc : sequence of B (K_i, 2) ndarrays, optional
            Negative clicks for each prompt, (row, col).

        Returns
        -------
        Candidates
        """


@runtime_checkable
class VolumeProposer(Protocol):
    """What the volume expansion needs from a mask propagator (SAM2's video predictor).

    Attributes
    ----------
    name : str
        Short description for logs and run records.
    """

    name: str

    def propagate(self, volume: np.ndarray, coords: np.ndarray, planes: np.ndarray,
                  labels: np.ndarray) -> Iterator[tuple[int, list]]:
        """Carry one mask per point through the planes.

        Parameters
        ----------
        volume : (Z, M, N[, C]) ndarray
        coords : (P, 2) ndarray
            (row, col) of each point on its plane.
        planes : (P,) ndarray of int
        labels : (P,) ndarray of int
            Class of each point: every mask carries the class of its point.

        Yields
        ------
        (int, list of (int, float, MaskCrop))
            A plane and its masks as (class, score in [0, 1], crop), every plane once, in any
            order.
        """


def iter_candidates(
    proposer: MaskProposer,
    batches: Iterable[tuple[np.ndarray, Sequence[np.ndarray] | None]],
) -> Iterator[Candidates]:
    """Candidates for each ``(points_rc, negatives_rc)`` batch, in order, decoded ahead.

    Uses the proposer's own ``predict_batches`` when it has one (the SAM2 proposer keeps its
    worker threads busy across batches); otherwise one background thread predicts the next batch
    while the caller works on the current one. Closing the iterator early starts no further batch.

    Parameters
    ----------
    proposer : MaskProposer
    batches : iterable of (points_rc, negatives_rc)
        Arguments of :meth:`MaskProposer.predict`, one pair per batch.

    Yields
    ------
    Candidates
    """
    own = getattr(proposer, "predict_batches", None)
    if own is not None:
        yield from own(batches)
        return
    todo = iter(batches)
    with ThreadPoolExecutor(1, thread_name_prefix="sseg-propose") as pool:

        def submit():
            batch = next(todo, None)
            return None if batch is None else pool.submit(proposer.predict, *batch)

        pending = submit()
        try:
            while pending is not None:
                cands = pending.result()
                pending = submit()
                yield cands
        finally:  # closed early (cancelled): do not start a batch nobody will read
            if pending is not None:
                pending.cancel()


@dataclass(frozen=True)
class MaskCrop:
    """A full-resolution binary mask stored as its bounding box and the crop inside it.

    Attributes
    ----------
    r0, c0 : int
        Top-left corner (row, col) of the box in the image.
    mask : (R, C) ndarray of bool
        Mask pixels inside the box; the image slice is ``[r0:r0 + R, c0:c0 + C]``.
    """

    r0: int
    c0: int
    mask: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        """The (row, col) slices of the box in the image."""
        return (slice(self.r0, self.r0 + self.mask.shape[0]),
                slice(self.c0, self.c0 + self.mask.shape[1]))

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        return int(np.count_nonzero(self.mask))


def _axis_weights(n_out: int, n_in: int, start: int, stop: int):
    """Source indices and weights of bilinear resizing (align_corners=False) for out[start:stop]."""
    scale = n_in / n_out
    src = (np.arange(start, stop, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)  # torch clamps negative source coordinates to 0
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = (src - i0).astype(np.float32)
    return i0, i1, f


def _grid_positions(coords: np.ndarray, n_out: int, n_in: int):
    """Bilinear source indices and weights at (possibly fractional) output coordinates."""
    src = (np.asarray(coords, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0)


def _threshold_bilinear(logits, rows, cols, threshold) -> np.ndarray:
    """``bilinear(logits) > threshold`` on an output box.

    Columns are interpolated first, on the small grid (grid rows x box columns); the box rows
    are then whole-row gathers of that array, in strips of about a million pixels.
    """
    i0, i1, fr = rows
    j0, j1, fc = cols
    g0, g1 = int(i0.min()), int(i1.max()) + 1
    sub = logits[g0:g1]
    across = sub[:, j0] * (1 - fc) + sub[:, j1] * fc  # (grid rows, box columns)
    # difference to the next grid row (zero on the last one, where i1 == i0)
    down = np.zeros_like(across)
    np.subtract(across[1:], across[:-1], out=down[:-1])
    r0 = i0 - g0
    f = np.where(i1 == i0, np.float32(0), fr)[:, None]
    mask = np.empty((i0.size, j0.size), dtype=bool)
    step = max(1, (1 << 20) // max(1, j0.size))
    for a in range(0, i0.size, step):
        r = slice(a, a + step)
        v = down[r0[r]]
        v *= f[r]
        v += across[r0[r]]
        np.greater(v, threshold, out=mask[r])
    return mask


def sample_grid(logits: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                image_shape: tuple[int, int]) -> np.ndarray:
    """Logit values at image pixels (rows, cols), bilinear on the grid.

    Parameters
    ----------
    logits : (..., h, w) ndarray
        Logit grids covering an image of ``image_shape``.
    rows, cols : (P,) ndarray of int
        Pixel indices in the image.
    image_shape : tuple of int
        (M, N) of the image.

    Returns
    -------
    (..., P) ndarray of float32
        For integer pixels this equals the value of :func:`upsample_crop` at those pixels.
    """
    h, w = logits.shape[-2:]
    r0, r1, fr = _grid_positions(rows, image_shape[0], h)
    c0, c1, fc = _grid_positions(cols, image_shape[1], w)
    if h == image_shape[0]:
        r1, fr = r0, np.zeros_like(fr)
    if w == image_shape[1]:
        c1, fc = c0, np.zeros_like(fc)
    top = logits[..., r0, c0] * (1 - fc) + logits[..., r0, c1] * fc
    bot = logits[..., r1, c0] * (1 - fc) + logits[..., r1, c1] * fc
    return (top * (1 - fr) + bot * fr).astype(np.float32)


def upsample_crop(
    logits: np.ndarray,
    image_shape: tuple[int, int],
    *,
    threshold: float = 0.0,
) -> MaskCrop | None:
    """Bring one low-resolution logit grid to full resolution, inside its bounding box only.

    Parameters
    ----------
    logits : (h, w) ndarray
        One candidate's logits (see the module's grid convention).
    image_shape : tuple of int
        (M, N) of the image.
    threshold : float
        Pixels whose interpolated logit is above it belong to the mask.

    Returns
    -------
    MaskCrop or None
        None when no pixel is in the mask. Only the box around the grid cells above threshold
        (grown by one cell, where bilinear values can still be above it) is computed, so memory
        stays proportional to the mask's box, never to (K, M, N); the interpolation runs in
        float32, in strips of about a million pixels.
    """
    logits = np.asarray(logits, dtype=np.float32)
    h, w = logits.shape
    m, n = image_shape
    on = logits > threshold
    if not on.any():
        return None
    rows_on = np.flatnonzero(on.any(axis=1))
    cols_on = np.flatnonzero(on.any(axis=0))
    # grid rows i - 1 .. i + 1 influence the image rows whose source coordinate lies in (i-1, i+1)
    # (not clamped: beyond the last cell the border value extends to the image edge)
    g0, g1 = rows_on[0] - 1, rows_on[-1] + 1
    k0, k1 = cols_on[0] - 1, cols_on[-1] + 1
    sr, sc = m / h, n / w
    r_start = max(0, int(np.floor((g0 + 0.5) * sr - 0.5)))
    r_stop = min(m, int(np.ceil((g1 + 0.5) * sr + 0.5)) + 1)
    c_start = max(0, int(np.floor((k0 + 0.5) * sc - 0.5)))
    c_stop = min(n, int(np.ceil((k1 + 0.5) * sc + 0.5)) + 1)
    if r_stop <= r_start or c_stop <= c_start:  # pragma: no cover - guarded by `on.any()`
        return None
    mask = _threshold_bilinear(logits, _axis_weights(m, h, r_start, r_stop),
                               _axis_weights(n, w, c_start, c_stop), threshold)
    if not mask.any():
        return None
    rr = np.flatnonzero(mask.any(axis=1))
    cc = np.flatnonzero(mask.any(axis=0))
    mask = mask[rr[0]:rr[-1] + 1, cc[0]:cc[-1] + 1]
    return MaskCrop(r0=r_start + int(rr[0]), c0=c_start + int(cc[0]),
                    mask=np.ascontiguousarray(mask))
