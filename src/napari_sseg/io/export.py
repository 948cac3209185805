"""Training-set export: images (lossless) and pseudo-label masks from the expansion of points.

Two layouts:

* ``folders``: ``images/<stem>.<ext>`` (the original bytes for PNG/TIFF, PNG for other files)
  and ``masks/<stem>.png`` holding class ids, with 255 where the expansion's confidence is below
  the threshold ("ignore"), plus ``classes.json``;
* ``nnunet``: nnU-Net v2's raw dataset layout, ``imagesTr/<case>_0000.png`` (an RGB or grey
  8-bit PNG: nnU-Net's natural-image reader), ``labelsTr/<case>.png`` with the classes
  renumbered 0..K-1 and the ignored pixels as K, and ``dataset.json`` whose ``labels`` name K
  ``"ignore"`` (nnU-Net's ignore label is the highest id). nnU-Net calls label 0
  ``background``; the original ids and names are kept under ``"napari_sseg"``.

Point pixels are always labelled with their class. :func:`export_image` is a task of the batch
engine (:mod:`napari_sseg.batch`); :func:`write_dataset_info` writes the per-run files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .atomic import atomic_open, atomic_write_json

__all__ = ["LAYOUTS", "IGNORE_VALUE", "export_outputs", "export_image", "write_dataset_info",
           "export_target"]

LAYOUTS = ("folders", "nnunet")
IGNORE_VALUE = 255


def export_outputs(stem: str, suffix: str, layout: str) -> tuple[str, str]:
    """Relative output names (image, mask) of one image in ``layout``."""
    if layout == "nnunet":
        return f"imagesTr/{stem}_0000.png", f"labelsTr/{stem}.png"
    ext = suffix.lower() if suffix.lower() in (".png", ".tif", ".tiff") else ".png"
    return f"images/{stem}{ext}", f"masks/{stem}.png"


def export_target(labels: np.ndarray, confidence: np.ndarray, points, *,
                  min_confidence: float, ignore: int) -> np.ndarray:
    """uint8 mask: the expansion's labels, ``ignore`` below ``min_confidence``, point pixels
    always their class."""
    mask = labels.astype(np.uint8)
    if min_confidence > 0:
        mask[confidence < min_confidence] = ignore
    rows, cols = points.pixel_indices()
    mask[rows, cols] = points.labels
    return mask


def _copy_lossless(src: Path, dst: Path, image: np.ndarray) -> None:
    """The original bytes for PNG/TIFF sources, else a PNG of the decoded pixels."""
    if src.suffix.lower() == dst.suffix.lower():
        with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        return
    _write_png(dst, image, where=str(src))


def _write_png(dst: Path, image: np.ndarray, *, where: str) -> None:
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    ok = (arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] in (3, 4))) or (
        arr.dtype == np.uint16 and arr.ndim == 2)
    if not ok:
        raise ValueError(f"{where}: an image of dtype {arr.dtype} and shape {arr.shape} cannot "
                         f"be stored as PNG; export it with the 'folders' layout from a TIFF")
    with atomic_open(dst, "wb") as fh:
        Image.fromarray(arr).save(fh, format="PNG", compress_level=1)


def export_image(inputs: dict, out_dir: Path, report=None) -> dict:
    """Expand one image's points and write the image and its pseudo-label mask.

    Notes
    -----
    Keys of ``inputs``:

    image : str
    points : dict
        :func:`napari_sseg.tasks.points_to_inputs` of the image's points.
    image_out, mask_out : str
        Output names relative to ``out_dir`` (see :func:`export_outputs`).
    layout : {"folders", "nnunet"}
    min_confidence : float
    index_of : dict, optional
        nnU-Net: class id (as a string) -> consecutive index; the ignore value is
        ``len(index_of)``.
    clip : bool
    _sources, _where : optional
        Where the points came from, for error messages.

    Returns
    -------
    dict
        ``classes`` of the points, ``ignored_fraction`` of the mask.
    """
    from ..core.expand import expand
    from ..tasks import bounded_points, points_from_inputs
    from .images import read_image

    path = Path(inputs["image"])
    image = read_image(path)
    points = points_from_inputs(inputs["points"])
    points = bounded_points(points, inputs.get("_sources") or [], image.shape[:2],
                            bool(inputs.get("clip")), inputs.get("_where") or str(path))
    if report is not None:
        report(path.name)
    layout = inputs.get("layout", "folders")
    if layout == "nnunet":
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or not (arr.ndim == 2 or arr.shape[2] in (1, 3)):
            raise ValueError(f"{path}: nnU-Net's natural-image layout takes 8-bit grey or RGB "
                             f"images; this one is {arr.dtype} with shape {arr.shape} (use "
                             f"--format folders)")
    result = expand(image, points)
    index_of = inputs.get("index_of")
    ignore = len(index_of) if layout == "nnunet" else IGNORE_VALUE
    if int(result.labels.max()) >= IGNORE_VALUE and layout == "folders":
        raise ValueError(f"{path}: class ids of 255 and more do not fit the 8-bit masks of the "
                         f"'folders' layout (255 is 'ignore')")
    labels, target_points = result.labels, points
    if layout == "nnunet":  # consecutive indices first: a class id may equal the ignore index
        from ..core.points import PointSet

        lut = np.zeros(max(int(cid) for cid in index_of) + 1, dtype=np.uint8)
        for cid, idx in index_of.items():
            lut[int(cid)] = idx
        labels = lut[labels]
        target_points = PointSet(points.coords, lut[points.labels])
    mask = export_target(labels, result.confidence, target_points,
                         min_confidence=float(inputs.get("min_confidence", 0.0)), ignore=ignore)
    img_out, mask_out = out_dir / inputs["image_out"], out_dir / inputs["mask_out"]
    img_out.parent.mkdir(parents=True, exist_ok=True)
    mask_out.parent.mkdir(parents=True, exist_ok=True)
    if layout == "nnunet":
        _write_png(img_out, np.asarray(image), where=str(path))
    else:
        _copy_lossless(path, img_out, image)
    _write_png(mask_out, mask, where=str(path))
    return {"classes": sorted(int(c) for c in points.classes),
            "ignored_fraction": round(float((mask == ignore).mean()), 6)}


def write_dataset_info(out_dir: str | os.PathLike, layout: str, classes: list[dict], *,
                       n_images: int, channels: int, min_confidence: float) -> Path:
    """Write ``classes.json`` (folders) or nnU-Net's ``dataset.json`` (nnunet).

    Parameters
    ----------
    classes : list of dict
        ``[{"id", "name"[, "colour"]}]`` sorted by id.
    channels : int
        1 (grey) or 3 (RGB) for nnU-Net's ``channel_names``.
    """
    out_dir = Path(out_dir)
    if layout == "folders":
        return atomic_write_json(out_dir / "classes.json", {
            "classes": classes, "ignore": IGNORE_VALUE, "min_confidence": min_confidence})
    names = {0: "background"}
    labels = {}
    for idx, c in enumerate(classes):
        labels[names.get(idx, str(c.get("name", c["id"])))] = idx
    if len(labels) < len(classes):  # two classes of one name: keep them apart
        labels = {("background" if i == 0 else f"{c.get('name', c['id'])}_{c['id']}"): i
                  for i, c in enumerate(classes)}
    labels["ignore"] = len(classes)
    channel_names = {"0": "R", "1": "G", "2": "B"} if channels == 3 else {"0": "grey"}
    return atomic_write_json(out_dir / "dataset.json", {
        "channel_names": channel_names,
        "labels": labels,
        "numTraining": n_images,
        "file_ending": ".png",
        "napari_sseg": {"classes": [{**c, "index": i} for i, c in enumerate(classes)],
                        "ignore_index": len(classes), "min_confidence": min_confidence,
                        "note": "masks are pseudo-labels from napari-sseg's expansion of points"},
    })
