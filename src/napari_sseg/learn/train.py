"""Train a survey model from the points (or masks) of many images.

:func:`iter_train` is a generator that yields :class:`~napari_sseg.core.progress.Progress`
and returns the model card; the CLI drives it with tqdm, the napari panel in a worker thread.
The forest is trained on pixels sampled per class from every image (class-balanced), the
U-Net on crops of the block-averaged images (see :mod:`napari_sseg.learn.unet`). A time budget
(``max_minutes``) stops the work cleanly: gathering the training pixels stops at 60 % of it,
growing trees (or epochs) at its end, and the model trained so far is saved.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.metrics import ConfusionMatrix
from ..core.progress import Progress, run_generator
from .card import ModelError, library_versions, write_card
from .dataset import (
    IGNORE,
    LABEL_SOURCES,
    TrainingItem,
    sample_pixels,
    target_from_expansion,
    target_from_mask,
    target_from_points,
)
from .features import FeatureSpec, channel_ranges, choose_downsample, features_at

__all__ = ["TrainOptions", "iter_train", "train", "NORMALISATION"]

NORMALISATION = ("each channel mapped to [0, 1] by ranges measured on the whole image: uint8 "
                 "by 0..255, other dtypes between their 0.5 and 99.5 percentiles; clipped")


@dataclass(frozen=True)
class TrainOptions:
    """Settings of :func:`train`.

    Attributes
    ----------
    kind : {"forest", "unet"}
    labels : {"expanded", "points", "mask"}
        Where the targets come from (see :mod:`napari_sseg.learn.dataset`).
    min_confidence : float
        With ``expanded``: pixels of lower expansion confidence are ignored.
    max_minutes : float or None
        Time budget of the whole training (None: none), on the ``clock``.
    seed : int
    validation_fraction : float
        Share of the images held out to score the model (none with fewer than 5 images).
    pixels_per_image : int
        Forest: pixels sampled per image (from masks and points the same number per class
        where possible, from pseudo-labels in proportion to each class's area).
    work_pixels : int
        Images are block-averaged by one factor for the whole model, chosen so that the median
        training image has at most about this many pixels.
    n_trees, max_depth, n_jobs : int
        Forest settings (``n_jobs`` threads/processes).
    smoothing : float
        Forest: its per-pixel probabilities are smoothed at prediction by a Gaussian of this
        sigma in working pixels (stored in the card). 1.5 was chosen on the development halves
        of ``benchmarks/bench_survey.py``'s test images: EM pseudo-label forest 68.0 -> 70.0
        mIoU (2.0: 70.3), aerial 29.9 -> 29.9 (1.0: 30.0).
    device, epochs, steps_per_epoch, batch_size, crop, learning_rate, encoder_weights, resume
        U-Net settings (see :mod:`napari_sseg.learn.unet`).
    clock : {"wall", "cpu"}
        What ``max_minutes`` counts: wall-clock time or this process's CPU time.
    """

    kind: str = "forest"
    labels: str = "expanded"
    min_confidence: float = 0.0
    max_minutes: float | None = None
    seed: int = 0
    validation_fraction: float = 0.1
    pixels_per_image: int = 4000
    work_pixels: int = 400_000
    n_trees: int = 100
    max_depth: int = 16
    n_jobs: int = 2
    smoothing: float = 1.5
    device: str = "auto"
    epochs: int = 50
    steps_per_epoch: int = 50
    batch_size: int = 8
    crop: int = 256
    learning_rate: float = 1e-3
    encoder_weights: str | None = None
    resume: bool = False
    clock: str = "wall"

    def now(self) -> float:
        """The clock of the time budget: wall seconds, or this process's CPU seconds (all its
        threads; ``clock="cpu"``, fair on a shared machine)."""
        return time.process_time() if self.clock == "cpu" else time.monotonic()


def train(
    items: Sequence[TrainingItem],
    out: str | os.PathLike,
    *,
    class_names: dict[int, str] | None = None,
    options: TrainOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> dict:
    """Train a survey model and save it to the folder ``out``.

    Parameters
    ----------
    items : sequence of TrainingItem
        Images with their points (``labels`` "expanded" or "points") or masks ("mask").
    out : str or PathLike
        Model folder (created; its ``card.json`` is written last, atomically).
    class_names : dict of int to str, optional
        Names of the class ids.
    options : TrainOptions, optional
    progress : callable, optional
        Called with :class:`Progress` events.

    Returns
    -------
    dict
        The model card.

    Raises
    ------
    ModelError
        Naming the file: an empty training set (no image, or no labelled pixel), images with
        different channel counts, a missing mask or points.
    """
    return run_generator(iter_train(items, out, class_names=class_names, options=options),
                         progress)


def _image_size(item: TrainingItem) -> int:
    """Pixels of an item's image, from the file header when possible."""
    if item.image is not None:
        return int(item.image.shape[0] * item.image.shape[1])
    try:
        if Path(item.path).suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(item.path) as tf:
                shape = tf.series[0].shape
            return int(np.prod(sorted(shape, reverse=True)[:2]))
        from PIL import Image

        with Image.open(item.path) as im:
            return int(im.size[0] * im.size[1])
    except Exception:
        return int(np.prod(item.load().shape[:2]))


def image_target(item: TrainingItem, image: np.ndarray, labels: str, *,
                 min_confidence: float = 0.0) -> np.ndarray:
    """The (M, N) int32 training target of one item (-1: ignored)."""
    shape = image.shape[:2]
    if labels == "mask":
        if item.mask is None:
            raise ModelError(f"{item.path}: no mask for this image")
        return target_from_mask(item.mask, shape=shape)
    points = item.bounded_points(shape)
    if points is None or not len(points):
        return np.full(shape, IGNORE, dtype=np.int32)
    if labels == "points":
        return target_from_points(shape, points)
    return target_from_expansion(image, points, min_confidence=min_confidence)


def small_target(target: np.ndarray, f: int, points=None) -> np.ndarray:
    """A target on the working grid (every ``f``-th pixel; point pixels kept where they fall)."""
    h, w = -(-target.shape[0] // f), -(-target.shape[1] // f)
    off = (f - 1) // 2
    small = np.full((h, w), IGNORE, dtype=np.int32)
    sub = target[off::f, off::f]
    small[: sub.shape[0], : sub.shape[1]] = sub
    if points is not None and len(points):
        rows, cols = points.pixel_indices()
        small[rows // f, cols // f] = points.labels
    return small


def _check_options(opts: TrainOptions) -> None:
    if opts.kind not in ("forest", "unet"):
        raise ValueError(f"unknown model kind {opts.kind!r} (forest or unet)")
    if opts.labels not in LABEL_SOURCES:
        raise ValueError(f"unknown labels {opts.labels!r} (one of {LABEL_SOURCES})")
    if opts.clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {opts.clock!r}")
    if not 0 <= opts.validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {opts.validation_fraction}")
    from .forest import MAX_SMOOTHING

    if not 0 <= opts.smoothing < MAX_SMOOTHING:
        raise ValueError(f"smoothing must be in [0, {MAX_SMOOTHING}) working pixels, got "
                         f"{opts.smoothing}")


def iter_train(
    items: Sequence[TrainingItem],
    out: str | os.PathLike,
    *,
    class_names: dict[int, str] | None = None,
    options: TrainOptions | None = None,
) -> Generator[Progress, None, dict]:
    """Generator version of :func:`train`: yields :class:`Progress`, returns the card."""
    opts = options or TrainOptions()
    _check_options(opts)
    out = Path(out)
    started = opts.now()
    budget = opts.max_minutes * 60 if opts.max_minutes else None
    deadline = started + budget if budget else None
    items = list(items)
    if not items:
        raise ModelError("empty training set: no image given")
    rng = np.random.default_rng(opts.seed)
    f = choose_downsample([_image_size(it) for it in items], work_pixels=opts.work_pixels)
    order = rng.permutation(len(items))
    n_val = int(round(opts.validation_fraction * len(items))) if len(items) >= 5 else 0
    val_set = set(order[:n_val].tolist())

    if opts.kind == "unet":
        from .unet import iter_train_unet

        card = yield from iter_train_unet(items, out, class_names=class_names or {},
                                          options=opts, spec=FeatureSpec(downsample=f),
                                          val_set=val_set,
                                          deadline=deadline, started=started)
        return card

    # CIELAB colour (RGB images): trained on tiles 1-3 and 5 of the aerial set, tested on tile
    # 4, the forest from pseudo-labels went from 23.9 to 30.1 mIoU, from the masks 29.5 to 32.2
    spec = FeatureSpec(downsample=f, colour="lab")
    total = len(items) + 2
    xs, ys = [], []
    channels = None
    used, skipped, val_items = [], [], []
    stopped_early = False
    gather_deadline = started + 0.6 * budget if budget else None
    for i, item in enumerate(items):
        if gather_deadline is not None and opts.now() > gather_deadline and xs:
            stopped_early = True
            break
        yield Progress(i, total, f"training pixels: {item.name}")
        image = item.load()
        channels = _check_channels(image, item, channels)
        target = image_target(item, image, opts.labels, min_confidence=opts.min_confidence)
        if i in val_set:
            pts = item.bounded_points(target.shape) if opts.labels != "mask" else None
            val_items.append((item, small_target(target, f, pts)))
            continue
        # pseudo-labels in proportion to their area: per-image class balance gave the small
        # regions of an expansion, the least reliable, as many pixels as its large ones (the
        # forest balances the classes over the whole set)
        rows, cols, lab = sample_pixels(target, opts.pixels_per_image, rng,
                                        balanced=opts.labels != "expanded")
        if not lab.size:
            skipped.append(item.name)
            continue
        lo, hi = channel_ranges(image)
        small = spec.reduce(image, lo, hi)
        xs.append(features_at(small, rows // f, cols // f, spec))
        ys.append(lab)
        used.append(item.name)
    if not xs:
        names = ", ".join(it.name for it in items[:5])
        raise ModelError(f"empty training set: no labelled pixel in the training images "
                         f"({names}{' ...' if len(items) > 5 else ''}); give images with points "
                         f"or masks")
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    classes = np.unique(np.concatenate([y] + [t[t >= 0] for _, t in val_items]))
    yield Progress(len(items), total, f"growing trees on {y.size} pixels")
    from .forest import FOREST_FILE, Forest, ForestModel

    events: list[tuple[int, int]] = []
    forest = Forest.fit(x, np.searchsorted(classes, y), classes.size, n_trees=opts.n_trees,
                        max_depth=opts.max_depth, seed=opts.seed, n_jobs=opts.n_jobs,
                        deadline=deadline, clock=opts.now,
                        progress=lambda d, t: events.append((d, t)))
    stopped_early |= len(forest.trees) < opts.n_trees
    names = class_names or {}
    card = {
        "kind": "forest",
        "classes": [{"id": int(c), "name": names.get(int(c), str(int(c)))} for c in classes],
        "channels": int(channels),
        "normalisation": NORMALISATION,
        "features": spec.to_dict(),
        "training": {
            "images": used, "images_without_labels": skipped,
            "labels": opts.labels, "min_confidence": opts.min_confidence,
            "pixels": int(y.size),
            "pixels_per_class": {int(c): int((y == c).sum()) for c in classes},
            "options": asdict(opts), "stopped_early": bool(stopped_early),
            "forest": {"trees": len(forest.trees), "max_depth": opts.max_depth,
                       "smoothing": opts.smoothing,
                       "library": "scikit-learn RandomForestClassifier, class-balanced"},
        },
        "versions": library_versions("sklearn", "scipy"),
        "files": [FOREST_FILE],
    }
    yield Progress(len(items) + 1, total, "validation")
    model = ForestModel(card, out, forest)
    card["validation"] = score_validation(model, val_items, f)
    card["training"]["seconds"] = round(opts.now() - started, 2)
    card["training"]["clock"] = opts.clock
    out.mkdir(parents=True, exist_ok=True)
    forest.save(out / FOREST_FILE)
    write_card(out, card)
    yield Progress(total, total, "saved")
    return card


def _check_channels(image: np.ndarray, item: TrainingItem, channels: int | None) -> int:
    from ..core.image import as_channels

    c = as_channels(image, name=str(item.path)).shape[2]
    if channels is not None and c != channels:
        raise ModelError(f"{item.path}: {c} channel(s), but the images before it have "
                         f"{channels}; a survey model is trained on images of one kind")
    return c


def score_validation(model, val_items, f: int) -> dict:
    """mIoU of ``model`` on the held-out images' targets (their training labels) on the
    working grid."""
    if not val_items:
        return {"images": [], "miou": None, "note": "fewer than 5 images: no validation split"}
    cm = ConfusionMatrix(ignore_index=-1)
    index = {int(c): i for i, c in enumerate(model.classes)}
    for item, tgt in val_items:
        proba, _ = model.predict_proba(item.load(), where=str(item.path))
        pred = proba.argmax(axis=2)
        t = tgt[: pred.shape[0], : pred.shape[1]]
        mapped = np.full(t.shape, -1, dtype=np.int64)
        for c, i in index.items():
            mapped[t == c] = i
        # classes the model never saw count as errors of their own index
        unseen = (t >= 0) & (mapped < 0)
        mapped[unseen] = len(index)
        cm.update(mapped, pred)
    s = cm.scores()
    return {"images": [it.name for it, _ in val_items], "miou": s["miou"],
            "pixel_accuracy": s["pixel_accuracy"],
            "per_class_iou": {int(model.classes[i]) if i < len(model.classes) else -1: v
                              for i, v in s["per_class_iou"].items()},
            "against": "the held-out images' training labels, on the working grid"}
