"""npe2 readers: points files -> one Points layer per class; class-index masks -> a Labels layer.

``get_reader`` and ``get_mask_reader`` only sniff (a CSV header, the start of a JSON file, an
image header) and return ``None`` quickly for files this plugin does not own; they never raise.
Importing this module imports neither napari nor Qt; the readers themselves run inside napari.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from ._classes import (
    background_value,
    class_colour,
    class_layer_kwargs,
)

logger = logging.getLogger(__name__)

__all__ = [
    "get_reader", "get_mask_reader", "read_points_layers", "read_mask_layer", "find_class_table",
    "is_points_file", "is_mask_file",
]

IMAGE_NAME_KEY = "sseg_image_name"
_SNIFF_BYTES = 8192
_MASK_WORDS = frozenset({
    "mask", "masks", "label", "labels", "labelled", "labeled", "gt", "seg", "segmentation",
    "annotation", "annotations", "classes", "truth", "groundtruth", "pred", "prediction", "sseg",
})
_MASK_SUFFIXES = (".png", ".tif", ".tiff")


# ----------------------------------------------------------------------------- sniffing
def _single_path(path) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)):
        return None
    return Path(path)


def _head(path: Path) -> str:
    with open(path, "rb") as fh:
        raw = fh.read(_SNIFF_BYTES)
    return raw.decode("utf-8-sig", errors="replace")


def is_points_file(path: Path) -> bool:
    """Whether ``path`` looks like a points file of this plugin (header / key sniffing only)."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json", ".txt", ".tsv") or not path.is_file():
        return False
    head = _head(path).lstrip()
    if suffix == ".json" or head.startswith("{"):
        return head.startswith("{") and ('"points"' in head or '"images"' in head)
    first = next((ln for ln in head.splitlines() if ln.strip()), "")
    delim = max([",", ";", "\t"], key=first.count)
    cols = {c.strip().strip('"').lower() for c in first.split(delim)}
    if {"name", "row", "column", "label"} <= cols:
        return True
    return {"axis-0", "axis-1"} <= cols and bool(cols & {"label", "class"})


def find_class_table(path: Path):
    """The class table beside ``path`` (``<stem>.classes.json|csv``, then ``classes.json|csv``)."""
    from .io import read_classes

    for cand in (
        path.with_name(path.stem + ".classes.json"),
        path.with_name(path.stem + ".classes.csv"),
        path.with_name("classes.json"),
        path.with_name("classes.csv"),
    ):
        if cand.is_file() and cand != path:
            return read_classes(cand)
    return None


def _sniff(path, is_ours, reader):
    """``reader`` when ``is_ours`` accepts the single file ``path``, else ``None``; never raises."""
    try:
        p = _single_path(path)
        if p is not None and is_ours(p):
            return reader
    except Exception:  # noqa: BLE001 - a sniffer must never raise
        logger.debug("napari-sseg: not sniffing %r", path, exc_info=True)
    return None


def get_reader(path):
    """npe2 reader hook for points files: a reader function, or ``None`` if not ours."""
    return _sniff(path, is_points_file, read_points_layers)


def _mask_header(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) from the image header without decoding pixels, or None."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            return tuple(series.shape), np.dtype(series.dtype)
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        size = im.size
    dtypes = {"L": np.uint8, "P": np.uint8, "I;16": np.uint16, "I;16B": np.uint16,
              "I;16L": np.uint16, "I": np.int32}
    if mode not in dtypes:
        return None
    return (size[1], size[0]), np.dtype(dtypes[mode])


def is_mask_file(path: Path) -> bool:
    """Single-channel integer PNG/TIFF with a class table beside it or a mask-like name.

    A mask-like name has a word such as ``mask``, ``labels`` or ``gt`` in its stem (``img_mask``)
    or lies in a folder of that name (``masks/``); plain grey images stay napari's.
    """
    if path.suffix.lower() not in _MASK_SUFFIXES or not path.is_file():
        return False
    words = set(re.split(r"[^a-z0-9]+", path.stem.lower())) | {path.parent.name.lower()}
    named = bool(words & _MASK_WORDS)
    sidecar = any(
        path.with_name(path.stem + s).is_file() for s in (".classes.json", ".classes.csv")
    )
    if not (named or sidecar):
        return False
    header = _mask_header(path)
    if header is None:
        return False
    shape, dtype = header
    return np.issubdtype(dtype, np.integer) and (
        len(shape) == 2 or (len(shape) == 3 and path.suffix.lower() != ".png")
    )


def get_mask_reader(path):
    """npe2 reader hook for class-index masks: a reader function, or ``None`` if not ours."""
    return _sniff(path, is_mask_file, read_mask_layer)


# ----------------------------------------------------------------------------- reading
def _point_size(coords: np.ndarray) -> float:
    if coords.size == 0:
        return 10.0
    extent = float(np.max(coords)) if coords.size else 500.0
    return float(np.clip(extent / 50, 4, 40))


def read_points_layers(path) -> list[tuple]:
    """Read a points file into layer-data tuples: one Points layer per (image, class).

    Layers carry ``metadata`` with the class id (``sseg_class_id``), name (``sseg_class_name``),
    colour and image file name, and are coloured by class. Coordinates are (row, col) pixels.

    Raises
    ------
    PointsFileError
        Naming the file and line when the file is malformed.
    """
    from .io import read_points_file

    p = _single_path(path)
    table = find_class_table(p)
    pf = read_points_file(p, classes=table)
    classes = pf.classes if table is None else table.merged(pf.classes)
    from .io import colour_hex

    colours = {cid: colour_hex(classes.colour(cid)) for cid in classes.ids}
    several = len(pf.points) > 1
    layers = []
    for i, (image_name, pset) in enumerate(pf.points.items()):
        size = _point_size(pset.coords)
        for cid in np.unique(pset.labels).tolist():
            coords = pset.coords[pset.labels == cid]
            if pset.planes is not None:  # points of a stack: (plane, row, col)
                coords = np.column_stack([pset.planes[pset.labels == cid], coords])
            name = classes.names.get(cid, f"class {cid}")
            colour = class_colour(cid, colours)
            kw = class_layer_kwargs(cid, name, colour, size=size)
            kw.pop("ndim")
            if several:
                kw["name"] = f"{name} [{image_name}]"
                kw["visible"] = i == 0
            kw["metadata"][IMAGE_NAME_KEY] = image_name
            layers.append((np.array(coords, dtype=float), kw, "points"))
    return layers


def read_mask_layer(path) -> list[tuple]:
    """Read a class-index PNG/TIFF into one Labels layer, coloured from its class table."""
    from .io import colour_hex, read_label_image

    p = _single_path(path)
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        data = np.asarray(tifffile.imread(p))
        if data.ndim == 2 or not np.issubdtype(data.dtype, np.integer):
            data = read_label_image(p)
    else:
        data = read_label_image(p)
    table = find_class_table(p)
    meta: dict = {"name": p.stem, "opacity": 0.6}
    ids = [int(v) for v in np.unique(data)] if data.size <= 50_000_000 else []
    names = {} if table is None else dict(table.names)
    colours = {cid: class_colour(cid) for cid in ids}
    if table is not None:
        colours.update({cid: colour_hex(table.colour(cid)) for cid in table.ids})
    max_id = max([i for i in ids if i not in (255, 65535)] + list(names) + [0])
    bg = background_value(max_id)
    colours.pop(bg, None)
    try:
        from napari.utils.colormaps import DirectLabelColormap

        cmap = {**colours, None: "transparent"}
        meta["colormap"] = DirectLabelColormap(color_dict=cmap, background_value=bg)
    except ImportError:  # only reachable outside napari
        pass
    meta["metadata"] = {"sseg_classes": names, "sseg_colours": colours}
    return [(data, meta, "labels")]

