"""Stacks on the command line and in batches: axes rules, and the per-stack expand task.

The rules never guess silently. A multi-page grey TIFF (or an OME-TIFF / ImageJ stack) with a
points file whose points have planes (a napari points CSV with three axes, ``axis-0`` the
plane, or ``"plane"`` in JSON) is a volume without any flag. A points file without planes for a
stack, a points file with planes for a 2D image, and points on planes beyond the stack are
errors that say how the file was read and how to say otherwise (``--axes``); an array whose
axes could be read either way (3 pages: planes or RGB?) is read by the file's own description
and the ``note`` of :class:`~napari_sseg.io.images.ImageAxes` says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["check_stack_points", "expand_stack", "points_to_inputs", "points_from_inputs"]


def points_to_inputs(points) -> dict:
    """A :class:`~napari_sseg.core.points.PointSet` (with or without planes) as JSON-able lists."""
    out = {"coords": [[float(r), float(c)] for r, c in points.coords],
           "labels": [int(v) for v in points.labels]}
    if points.planes is not None:
        out["planes"] = [int(z) for z in points.planes]
    return out


def points_from_inputs(data: dict):
    """The :class:`~napari_sseg.core.points.PointSet` of :func:`points_to_inputs`."""
    from .core.points import PointSet

    coords = np.asarray(data.get("coords", []), dtype=np.float64).reshape(-1, 2)
    planes = data.get("planes")
    return PointSet(coords, np.asarray(data.get("labels", []), dtype=np.int64),
                    planes=None if planes is None else np.asarray(planes, dtype=np.int64))


def check_stack_points(read, points, *, image: str, points_name: str) -> None:
    """Raise a ``ValueError`` when the image's axes and the points' planes disagree.

    Parameters
    ----------
    read : ImageAxes
        The image as read (:func:`~napari_sseg.io.images.read_image_axes`).
    points : PointSet
    image, points_name : str
        File names for the message.
    """
    from .core.volume import check_volume_points

    how = f"{image} was read as {read.describe()} (axes {read.axes})"
    if read.is_stack and points.planes is None:
        other = "CYX" if read.data.ndim == 3 else "the file's axes with C for the planes"
        raise ValueError(
            f"{how}, but {points_name} has 2D points (row, col) without planes. Give the points "
            f"their planes (a napari points CSV with axis-0 = plane, axis-1 = row, axis-2 = col, "
            f"or 'plane' in JSON), or pass --axes {other} if the planes are the channels of one "
            f"image"
        )
    if not read.is_stack and points.planes is not None:
        hint = (" If the channels are planes, say so with --axes, Z for that axis (ZYX for "
                "pages, YXZ for colour samples)." if read.axes == "YXC" else "")
        raise ValueError(
            f"{how}, but {points_name} has points with planes (3 axes); a 2D image takes points "
            f"with row and col only (or save the planes as a multi-page TIFF).{hint}"
        )
    if read.is_stack:
        check_volume_points(points, read.data.shape, source=f"{points_name} ({image})")


def expand_stack(inputs: dict, out_dir: Path, report=None) -> dict:
    """Expand the points of one stack into a multi-page label TIFF (one grey page per plane).

    Inputs
    ------
    image : str
        Stack file (multi-page TIFF, OME-TIFF).
    points : dict
        :func:`points_to_inputs` of the stack's points (with planes).
    labels_out : str
        Output name relative to ``out_dir`` (``<stem>.tif``).
    axes : str, optional
        Axes of the array as stored (``--axes``), else the file's own.
    spacing : list of 3 float, optional
        Voxel spacing (plane, row, col), default (1, 1, 1).
    plane_range : list of 2 int, optional
        Only these planes (start, stop) are labelled; the others are written as 0.
    _where : str, optional
        Names the points file in error messages.

    Returns
    -------
    dict
        ``classes``, ``method``, ``planes`` (count), ``axes`` and ``note`` (how an ambiguous
        file was read, empty otherwise).
    """
    from .core.progress import run_generator
    from .core.volume import iter_expand_volume
    from .io.images import read_image_axes, write_label_stack

    path = Path(inputs["image"])
    read = read_image_axes(path, axes=inputs.get("axes"))
    points = points_from_inputs(inputs["points"])
    check_stack_points(read, points, image=path.name,
                       points_name=inputs.get("_where") or "the points")
    spacing = tuple(inputs.get("spacing") or (1.0, 1.0, 1.0))
    rng = inputs.get("plane_range")
    result = run_generator(
        iter_expand_volume(read.data, points, spacing=spacing,
                           plane_range=None if rng is None else tuple(rng)),
        None if report is None else (lambda e: report(f"{path.name}: {e.message}")),
    )
    labels = result.labels
    if rng is not None:
        full = np.zeros(read.data.shape[:3], dtype=labels.dtype)
        full[rng[0]:rng[1]] = labels
        labels = full
    write_label_stack(out_dir / inputs["labels_out"], labels)
    return {"classes": sorted(int(c) for c in points.classes),
            "method": result.info.get("method"), "planes": int(read.data.shape[0]),
            "axes": read.axes, "note": read.note}
