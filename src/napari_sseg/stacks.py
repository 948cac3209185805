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

__all__ = ["check_stack_points", "expand_stack", "points_to_inputs", "points_from_inputs",
           "read_label_stack", "simulate_stack"]


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
        Only these planes (start, stop) are labelled; the others are written as 0 (weight-free
        expansion only).
    backend : dict, optional
        Backend settings (:func:`napari_sseg.tasks.get_proposer`): where they give SAM2, the
        points' masks are propagated through the planes by SAM2's video predictor (same model
        and weights) and the weight-free volume expansion fills the rest
        (:func:`~napari_sseg.core.volume.iter_hybrid_expand_volume`).
    _where : str, optional
        Names the points file in error messages.

    Returns
    -------
    dict
        ``classes``, ``method``, ``planes`` (count), ``axes`` and ``note`` (how an ambiguous
        file was read, empty otherwise).
    """
    from .core.progress import run_generator
    from .core.volume import iter_expand_volume, iter_hybrid_expand_volume
    from .io.images import read_image_axes, write_label_stack
    from .tasks import get_proposer

    path = Path(inputs["image"])
    read = read_image_axes(path, axes=inputs.get("axes"))
    points = points_from_inputs(inputs["points"])
    check_stack_points(read, points, image=path.name,
                       points_name=inputs.get("_where") or "the points")
    spacing = tuple(inputs.get("spacing") or (1.0, 1.0, 1.0))
    rng = inputs.get("plane_range")
    image_proposer, _ = get_proposer(inputs.get("backend"))
    if image_proposer is None:
        steps = iter_expand_volume(read.data, points, spacing=spacing,
                                   plane_range=None if rng is None else tuple(rng))
    elif rng is not None:
        raise ValueError("a plane range works with the weight-free expansion only, not SAM2")
    else:
        from .backends.sam2_video import video_proposer_like

        steps = iter_hybrid_expand_volume(read.data, points, video_proposer_like(image_proposer),
                                          spacing=spacing)
    result = run_generator(
        steps, None if report is None else (lambda e: report(f"{path.name}: {e.message}")))
    labels = result.labels
    if rng is not None:
        full = np.zeros(read.data.shape[:3], dtype=labels.dtype)
        full[rng[0]:rng[1]] = labels
        labels = full
    write_label_stack(out_dir / inputs["labels_out"], labels)
    return {"classes": sorted(int(c) for c in points.classes),
            "method": result.info.get("method"), "planes": int(read.data.shape[0]),
            "axes": read.axes, "note": read.note}


def read_label_stack(path, shape) -> np.ndarray:
    """A (Z, M, N) class-index stack (multi-page TIFF), checked against the image's ``shape``."""
    import tifffile

    from .io.images import ImageReadError

    path = Path(path)
    try:
        gt = np.asarray(tifffile.imread(path))
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot read the label stack: {exc}") from exc
    if gt.shape != tuple(shape):
        raise ValueError(f"{path}: label stack of shape {gt.shape} does not match the image "
                         f"stack of shape {tuple(shape)}")
    if not np.issubdtype(gt.dtype, np.integer):
        raise ValueError(f"{path}: a label stack holds integer class ids, got {gt.dtype}")
    return gt


def simulate_stack(inputs: dict, out_dir: Path, report=None) -> dict:
    """Simulate points on every K-th plane of one stack, expand the volume, score every plane.

    Inputs
    ------
    image, ground_truth : str
        Image stack and class-index stack (multi-page TIFFs).
    index : int
        The stack's position in the run (enters the sampling seed).
    seeds : list of int
    points_per_plane, every : int
    ignore_index : int or None
    spacing : list of 3 float, optional
    axes : str, optional

    Returns
    -------
    dict
        ``planes`` and ``by_seed``: per seed the number of ``points`` and the confusion
        matrices (rows ground truth, ids ``0..n-1``) of the planes ``with`` and ``without``
        points.
    """
    from .core.metrics import ConfusionMatrix
    from .core.progress import run_generator
    from .core.simulate import iter_simulate_volume
    from .io.images import read_image_axes
    from .tasks import simulation_seed

    path = Path(inputs["image"])
    if inputs.get("ground_truth") is None:
        raise ValueError(inputs.get("_missing") or f"no ground-truth stack for {path.name}")
    read = read_image_axes(path, axes=inputs.get("axes"))
    if not read.is_stack:
        raise ValueError(f"{path.name} was read as {read.describe()} (axes {read.axes}), not a "
                         f"stack; --every needs stacks (or pass --axes)")
    gt = read_label_stack(inputs["ground_truth"], read.data.shape[:3])
    ignore = inputs.get("ignore_index")
    every = int(inputs["every"])
    by_seed = {}
    for seed in inputs["seeds"]:
        points, expansion = run_generator(
            iter_simulate_volume(read.data, gt, int(inputs["points_per_plane"]), every=every,
                                 seed=simulation_seed(seed, inputs.get("index", 0)),
                                 spacing=tuple(inputs.get("spacing") or (1, 1, 1)),
                                 ignore_index=255 if ignore is None else ignore),
            None if report is None else (lambda e: report(f"{path.name}: {e.message}")))
        mats = {}
        for part, planes in (("with", range(0, gt.shape[0], every)),
                             ("without", [z for z in range(gt.shape[0]) if z % every])):
            cm = ConfusionMatrix(ignore_index=ignore)
            for z in planes:
                cm.update(gt[z], expansion.labels[z])
            mats[part] = cm.matrix.tolist()
        by_seed[str(seed)] = {"points": len(points), **mats}
    return {"planes": int(gt.shape[0]), "by_seed": by_seed}

