"""Label images that have no points with a saved survey model (a batch-engine task).

:func:`predict_image` has the task shape of :mod:`napari_sseg.batch` and writes the same files
as an expansion (``<stem>.png`` class ids, ``<stem>_overlay.png``) and, on request, the
confidence (``<stem>_confidence.tif``, float32 probability of the chosen class). The model is
loaded once per process and setting.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

__all__ = ["predict_image", "cached_model", "write_confidence", "survey_prior"]


@functools.lru_cache(maxsize=2)
def _model(folder: str, device: str, stamp: tuple):
    from .model import load_model

    return load_model(folder, device=device)


def cached_model(folder: str | os.PathLike, device: str = "auto"):
    """:func:`~napari_sseg.learn.model.load_model`, once per process (loaded again when a
    file of the folder changes)."""
    from .card import CARD_NAME, ModelError

    folder = Path(folder)
    if not (folder / CARD_NAME).is_file():
        raise ModelError(f"{folder / CARD_NAME}: missing; {folder} is not a napari-sseg model "
                         f"folder (train one with 'napari-sseg train')")
    stamp = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                         for p in folder.iterdir() if p.is_file()))
    return _model(str(folder), device, stamp)


def write_confidence(path: str | os.PathLike, confidence: np.ndarray) -> Path:
    """Write a float32 confidence map as a TIFF atomically."""
    import tifffile

    from ..io.atomic import atomic_open

    path = Path(path)
    with atomic_open(path, "wb") as fh:
        tifffile.imwrite(fh, np.asarray(confidence, dtype=np.float32), photometric="minisblack")
    return path


def predict_image(inputs: dict, out_dir: Path, report=None) -> dict:
    """Predict one image with a survey model and write its label PNG and overlay.

    Notes
    -----
    Keys of ``inputs``:

    image : str
        Image file.
    model : str
        Model folder.
    labels_out, overlay_out : str
        Output names relative to ``out_dir``.
    confidence_out : str, optional
        Output name of the confidence TIFF (none written without it).
    max_id : int, optional
        Largest class id of the run (keeps the label dtype the same over the batch).
    classes : list of dict, optional
        ``[{"id", "name", "colour"}]`` for the overlay colours (default: the model's names).
    device : str, optional

    Returns
    -------
    dict
        ``classes`` (ids predicted) and ``method``.
    """
    from ..io import read_image, write_label_image, write_overlay
    from ..io.classes import classes_from_items

    path = Path(inputs["image"])
    model = cached_model(inputs["model"], inputs.get("device", "auto"))
    image = read_image(path)
    if report is not None:
        report(path.name)
    labels, confidence = model.predict(image, where=str(path))
    items = inputs.get("classes") or [{"id": int(c), "name": n}
                                      for c, n in model.class_names.items()]
    table = classes_from_items(items, lambda i: f"class #{i}", error=ValueError)
    write_label_image(out_dir / inputs["labels_out"], labels,
                      max_id=inputs.get("max_id", int(model.classes.max())))
    write_overlay(out_dir / inputs["overlay_out"], image, labels, table)
    out = {"classes": sorted(int(c) for c in np.unique(labels)),
           "method": f"survey model ({model.kind})"}
    if inputs.get("confidence_out"):
        write_confidence(out_dir / inputs["confidence_out"], confidence)
        out["mean_confidence"] = float(confidence.mean())
    return out


def survey_prior(folder: str | os.PathLike, image: np.ndarray, classes, *, where: str = "points",
                 device: str = "auto", max_pixels: int = 1_000_000) -> dict:
    """The keyword arguments that give an expansion a survey model as its third expert.

    Parameters
    ----------
    folder : str or PathLike
        Model folder.
    image : (M, N[, C]) ndarray
    classes : array_like of int
        Class ids of the image's points (each must be one of the model's).
    where : str
        Names the points in errors.
    max_pixels : int
        The probability map is averaged down to at most about this many pixels (the expansion
        works at about 0.4 megapixels).

    Returns
    -------
    dict
        ``prior_proba`` (h, w, K) float32 and ``prior_classes`` (K,) for
        :func:`napari_sseg.core.expand.expand` or :func:`~napari_sseg.core.pipeline.iter_expand_image`.

    Raises
    ------
    ModelError
        Naming the model or the points: classes that disagree, an image whose channels differ.
    """
    model = cached_model(folder, device)
    model.check_classes(classes, where=where)
    proba, _ = model.predict_proba(image, max_pixels=max_pixels, where=where)
    return {"prior_proba": proba, "prior_classes": model.classes}
