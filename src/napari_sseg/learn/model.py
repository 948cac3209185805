"""A saved survey model: load it, check images against it, predict tiled class probabilities.

Prediction works tile by tile on the model's working grid (the image block-averaged by the
card's ``downsample``), each tile with a halo of context that is cropped away, so the memory
a prediction needs does not grow with the image beyond its inputs and outputs. The class
probabilities of a tile are brought back to full resolution by bilinear interpolation
(only near class boundaries for every class), as the expansion does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..core.image import as_channels
from ..core.superpixels import block_mean
from .card import ModelError, read_card
from .features import FeatureSpec, channel_ranges

__all__ = ["SurveyModel", "load_model"]


class SurveyModel:
    """Base of the survey models: class table, channels, tiling and prediction.

    Subclasses implement :meth:`proba_small`, the class probabilities of a normalised,
    block-averaged tile, and say how much context (``halo``, working pixels) a tile needs.

    Attributes
    ----------
    card : dict
        The model card (see :mod:`napari_sseg.learn.card`).
    folder : Path or None
        Where the model was loaded from.
    classes : (K,) ndarray of int64
        Class ids, in the order of the probability axis.
    """

    tile: int = 512
    halo: int = 32

    def __init__(self, card: dict, folder: Path | None = None):
        self.card = card
        self.folder = Path(folder) if folder is not None else None
        self.classes = np.array([int(c["id"]) for c in card["classes"]], dtype=np.int64)
        self.class_names = {int(c["id"]): str(c.get("name", c["id"])) for c in card["classes"]}
        self.channels = int(card["channels"])
        self.spec = FeatureSpec.from_dict(card.get("features", {}))

    @property
    def kind(self) -> str:
        return self.card["kind"]

    @property
    def where(self) -> str:
        """How to name the model in messages."""
        return str(self.folder) if self.folder is not None else "the survey model"

    # ------------------------------------------------------------------------------ checks

    def check_image(self, image: np.ndarray, *, where: str = "image") -> np.ndarray:
        """The (M, N, C) view of ``image``; :class:`ModelError` if its channels differ."""
        try:
            arr = as_channels(image, name=where)
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
        if arr.shape[2] != self.channels:
            raise ModelError(f"{where}: {arr.shape[2]} channel(s), but {self.where} was trained "
                             f"on images with {self.channels}")
        return arr

    def check_classes(self, classes, *, where: str = "points") -> None:
        """:class:`ModelError` unless every class id in ``classes`` is one of the model's."""
        extra = sorted(set(int(c) for c in np.asarray(classes).ravel()) - set(self.classes.tolist()))
        if extra:
            raise ModelError(f"{where}: class id(s) {extra} are not among the classes of "
                             f"{self.where} ({self.classes.tolist()}); the points and the model "
                             f"must share one class table")

    # -------------------------------------------------------------------------- prediction

    def proba_small(self, small: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """(h, w, K) float32 class probabilities of a normalised, block-averaged tile."""
        raise NotImplementedError

    def _tiles(self, shape: tuple[int, int], step: int) -> Iterator[tuple[int, int, int, int]]:
        """Tiles (r0, r1, c0, c1) of the working grid of ``shape``, tile sizes multiples of ``step``."""
        h, w = shape
        t = max(step, (self.tile // step) * step)
        for r0 in range(0, h, t):
            for c0 in range(0, w, t):
                yield r0, min(h, r0 + t), c0, min(w, c0 + t)

    def _iter_proba(self, arr: np.ndarray, step: int = 1):
        """Yield (r0, r1, c0, c1, R0, C0, proba) per tile: the tile on the working grid, the
        origin of its haloed window and the window's probabilities."""
        f = self.spec.downsample
        m, n = arr.shape[:2]
        h, w = -(-m // f), -(-n // f)
        lo, hi = channel_ranges(arr)
        for r0, r1, c0, c1 in self._tiles((h, w), step):
            R0, R1 = max(0, r0 - self.halo), min(h, r1 + self.halo)
            C0, C1 = max(0, c0 - self.halo), min(w, c1 + self.halo)
            small = self.spec.reduce(arr[R0 * f: R1 * f, C0 * f: C1 * f], lo, hi)
            yield r0, r1, c0, c1, R0, C0, self.proba_small(small)

    def predict_proba(
        self,
        image: np.ndarray,
        *,
        max_pixels: int | None = None,
        where: str = "image",
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, int]:
        """Class probabilities of the whole image on a coarse grid.

        Parameters
        ----------
        image : (M, N[, C]) ndarray
        max_pixels : int, optional
            Average the probabilities further in blocks so the map has at most about this
            many pixels.
        where : str
            Name of the image in errors.
        progress : callable, optional
            ``progress(done, total)`` after each tile.

        Returns
        -------
        proba : (h, w, K) ndarray of float32
            Probabilities of ``classes`` on a grid ``factor`` times coarser than the image.
        factor : int
        """
        arr = self.check_image(image, where=where)
        f = self.spec.downsample
        m, n = arr.shape[:2]
        h, w = -(-m // f), -(-n // f)
        k = 1 if not max_pixels else max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
        out = np.zeros((-(-h // k), -(-w // k), self.classes.size), dtype=np.float32)
        total = len(list(self._tiles((h, w), k)))
        for i, (r0, r1, c0, c1, R0, C0, p) in enumerate(self._iter_proba(arr, k)):
            inner = p[r0 - R0: r1 - R0, c0 - C0: c1 - C0]
            out[r0 // k: -(-r1 // k), c0 // k: -(-c1 // k)] = block_mean(inner, k)
            if progress is not None:
                progress(i + 1, total)
        return out, f * k

    def predict(
        self,
        image: np.ndarray,
        *,
        where: str = "image",
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution labels and confidence, tile by tile.

        Returns
        -------
        labels : (M, N) ndarray of uint8 / uint16 / int32
            The most probable class id of every pixel.
        confidence : (M, N) ndarray of float32
            Its probability.
        """
        from ..core.expand import _assemble, label_dtype

        arr = self.check_image(image, where=where)
        f = self.spec.downsample
        m, n = arr.shape[:2]
        h, w = -(-m // f), -(-n // f)
        labels = np.empty((m, n), dtype=label_dtype(int(self.classes.max())))
        confidence = np.empty((m, n), dtype=np.float32)
        total = len(list(self._tiles((h, w), 1)))
        for i, (r0, r1, c0, c1, R0, C0, p) in enumerate(self._iter_proba(arr)):
            wm, wn = min(m, p.shape[0] * f + R0 * f) - R0 * f, min(n, p.shape[1] * f + C0 * f) - C0 * f
            lab, conf = _assemble(p, self.classes, f, (wm, wn))
            rs = slice(r0 * f - R0 * f, min(m, r1 * f) - R0 * f)
            cs = slice(c0 * f - C0 * f, min(n, c1 * f) - C0 * f)
            labels[r0 * f: min(m, r1 * f), c0 * f: min(n, c1 * f)] = lab[rs, cs]
            confidence[r0 * f: min(m, r1 * f), c0 * f: min(n, c1 * f)] = conf[rs, cs]
            if progress is not None:
                progress(i + 1, total)
        return labels, confidence


def load_model(folder: str | os.PathLike, *, device: str = "auto") -> SurveyModel:
    """Load a model folder written by :func:`napari_sseg.learn.train.train`.

    Parameters
    ----------
    folder : str or PathLike
        The model folder (``card.json`` and its weights file).
    device : {"auto", "cpu", "cuda", "mps"}
        Where a network runs (ignored by the forest).

    Raises
    ------
    ModelError
        Naming the file: missing card or weights, another format version, a truncated or
        changed weights file.
    """
    folder = Path(folder)
    card = read_card(folder)
    if card["kind"] == "forest":
        from .forest import FOREST_FILE, Forest, ForestModel

        return ForestModel(card, folder, Forest.load(folder / FOREST_FILE))
    from .unet import UNetModel

    return UNetModel.load(card, folder, device=device)
