"""npe2 writers: class Points layers -> one CoralNet-style CSV or JSON; Labels -> PNG/TIFF.

Every file is written atomically (temporary file + rename) by :mod:`napari_sseg.io`; writers
return the list of paths written. Importing this module imports neither napari nor Qt.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ._classes import CLASS_COLOUR_KEY, CLASS_ID_KEY, CLASS_NAME_KEY, SUGGESTIONS_KEY

logger = logging.getLogger(__name__)

__all__ = ["write_points", "write_labels"]

IMAGE_NAME_KEY = "sseg_image_name"


def _class_sets(layer_data: list[tuple]):
    """(points per image name, ClassTable) from Points layer-data tuples."""
    from .core.points import PointSet
    from .io import ClassTable, parse_colour

    table = ClassTable()
    chosen: list[tuple[int, str | None, np.ndarray]] = []
    untagged = []
    for data, meta, ltype in layer_data:
        if ltype != "points":
            continue
        md = meta.get("metadata") or {}
        if md.get(SUGGESTIONS_KEY):
            logger.info("not writing the suggestions layer %r", meta.get("name"))
            continue
        coords = np.asarray(data, dtype=float).reshape(len(data), -1) if len(data) else (
            np.zeros((0, 2))
        )
        if coords.shape[1] != 2:
            raise ValueError(
                f"points layer {meta.get('name')!r} has {coords.shape[1]} dimensions; points files "
                "hold 2D (row, column) points: write the layers of one plane"
            )
        if CLASS_ID_KEY in md:
            cid = int(md[CLASS_ID_KEY])
            table.names[cid] = str(md.get(CLASS_NAME_KEY, meta.get("name", cid)))
            if md.get(CLASS_COLOUR_KEY):
                table.colours[cid] = parse_colour(md[CLASS_COLOUR_KEY])
            chosen.append((cid, md.get(IMAGE_NAME_KEY), coords))
        else:
            untagged.append((str(meta.get("name", "points")), md.get(IMAGE_NAME_KEY), coords))
    next_id = max(table.names, default=0) + 1
    for name, image_name, coords in untagged:  # plain points layers become new classes
        cid = table.id_of(name)
        if cid is None:
            cid, next_id = next_id, next_id + 1
            table.names[cid] = name
        chosen.append((cid, image_name, coords))
    if not chosen:
        raise ValueError("no points layers to write")
    known = {name for _, name, _ in chosen if name is not None}
    if len(known) == 1:  # layers without an image name belong to the only image there is
        only = known.pop()
        chosen = [(cid, name or only, coords) for cid, name, coords in chosen]
    per_image: dict = {}
    for cid, image_name, coords in chosen:
        c, lab = per_image.setdefault(image_name, ([], []))
        c.append(coords)
        lab.append(np.full(len(coords), cid, dtype=np.int64))
    points = {
        k: PointSet(np.concatenate(c), np.concatenate(lab), dict(table.names))
        for k, (c, lab) in per_image.items()
    }
    return points, table


def write_points(path: str, layer_data: list[tuple]) -> list[str]:
    """Write class Points layers to one CoralNet-style CSV (plus a class table) or one JSON.

    ``.csv``: ``Name,Row,Column,Label`` with integer class ids, and ``<stem>.classes.csv``
    (``id,name,colour``) beside it. ``.json``: the napari-sseg JSON schema with its class table.
    ``Name`` is the image file name the points were read for, else ``<stem>.png``.

    Returns
    -------
    list of str
        The files written.
    """
    from .io import write_classes_csv, write_points_csv, write_points_json

    out = Path(path)
    points, table = _class_sets(layer_data)
    if out.suffix.lower() == ".json":
        if list(points) == [None]:
            write_points_json(out, points, classes=table)
        else:
            named = {k or f"{out.stem}.png": v for k, v in points.items()}
            write_points_json(out, named, classes=table)
        return [str(out)]
    if out.suffix.lower() != ".csv":
        out = out.with_suffix(".csv")
    named = {k or f"{out.stem}.png": v for k, v in points.items()}
    written = [str(write_points_csv(out, named, classes=table))]
    side = out.with_name(out.stem + ".classes.csv")
    written.append(str(write_classes_csv(side, table)))
    return written


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a class-index PNG or TIFF (values = class ids).

    A 2D layer goes to PNG or TIFF; a stack (z or time) only to TIFF. When the layer knows its
    classes (a layer made by the SSeg widget or read by this plugin) ``<stem>.classes.json`` is
    written beside it.

    Returns
    -------
    list of str
        The files written.
    """
    from .io import ClassTable, atomic_open, parse_colour, write_classes_json, write_label_image

    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        out = out.with_suffix(".png")
        suffix = ".png"
    arr = np.asarray(data)
    if arr.ndim == 2:
        write_label_image(out, arr)
    elif suffix == ".png":
        raise ValueError(
            f"{out}: labels layer {meta.get('name')!r} has shape {arr.shape}; a PNG holds one 2D "
            "plane: save it as .tif"
        )
    else:
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
            raise ValueError(f"labels layer {meta.get('name')!r} must hold non-negative integers")
        import tifffile

        # one grey page per plane: left to guess, tifffile stores 3 or 4 planes (or columns)
        # as the colour samples of an RGB image
        with atomic_open(out, "wb") as fh:
            tifffile.imwrite(fh, arr, photometric="minisblack", compression="zlib")
    written = [str(out)]
    md = meta.get("metadata") or {}
    names = {int(k): str(v) for k, v in (md.get("sseg_classes") or {}).items()}
    colours = {int(k): parse_colour(v) for k, v in (md.get("sseg_colours") or {}).items()}
    if names:
        side = out.with_name(out.stem + ".classes.json")
        written.append(str(write_classes_json(side, ClassTable(names, colours))))
    return written
