"""Per-image task functions of the batch engine (:mod:`napari_sseg.batch`).

Each has the shape ``task(inputs: dict, out_dir: Path) -> dict``: it reads its own image (and
ground truth) from the paths in ``inputs``, writes its outputs atomically into ``out_dir`` and
returns the fields of its entry in the run record. They run in the calling process or on a Dask
worker alike, so they hold no client state; a worker builds a mask proposer once per setting
(:func:`get_proposer`) and reuses it for the following images.

Points travel inside ``inputs`` as plain lists (:func:`points_to_inputs`), so that a task's
digest changes exactly when its own points change.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: imported before a local Dask cluster forks its workers (see :mod:`napari_sseg.batch`)
WORKER_IMPORTS = ("napari_sseg.core.pipeline", "napari_sseg.io.images", "PIL.Image",
                  "PIL.PngImagePlugin", "sklearn.ensemble", "scipy.sparse.csgraph")

__all__ = [
    "bounded_points",
    "expand_image",
    "get_proposer",
    "points_from_inputs",
    "points_to_inputs",
    "simulate_image",
    "simulation_seed",
]


# ----------------------------------------------------------------------------- shared helpers


def points_to_inputs(points) -> dict:
    """A :class:`~napari_sseg.core.points.PointSet` as JSON-able lists (exact float coords)."""
    return {"coords": [[float(r), float(c)] for r, c in points.coords],
            "labels": [int(v) for v in points.labels]}


def points_from_inputs(data: dict):
    """The :class:`~napari_sseg.core.points.PointSet` of :func:`points_to_inputs`."""
    from .core.points import PointSet

    coords = np.asarray(data.get("coords", []), dtype=np.float64).reshape(-1, 2)
    return PointSet(coords, np.asarray(data.get("labels", []), dtype=np.int64))


@functools.lru_cache(maxsize=2)
def _proposer(key: str):
    from .backends import resolve_backend

    s = json.loads(key)
    return resolve_backend(s.get("backend", "auto"), model=s.get("model", "tiny"),
                           device=s.get("device", "auto"), checkpoint=s.get("checkpoint"),
                           cache_dir=s.get("cache_dir"))


def get_proposer(settings: dict | None):
    """(proposer, description) for backend settings, built once per process and setting.

    ``settings``: ``backend``, ``model``, ``device``, ``checkpoint``, ``cache_dir`` (as in
    :func:`napari_sseg.backends.resolve_backend`); ``None`` is the superpixel expansion.
    """
    if not settings:
        return None, "superpixel"
    keys = ("backend", "model", "device", "checkpoint", "cache_dir")
    return _proposer(json.dumps({k: settings.get(k) for k in keys}, sort_keys=True))


def bounded_points(points, sources, shape, clip: bool, where: str):
    """Points inside ``shape``: clipped with a warning, or a ``ValueError`` naming the lines."""
    bad = points.outside(shape)
    if not bad.size:
        return points
    lines = ", ".join(
        f"{sources[i] if i < len(sources) else f'#{i}'} (row={points.coords[i, 0]:g}, "
        f"col={points.coords[i, 1]:g})" for i in bad[:10]
    )
    more = f" and {bad.size - 10} more" if bad.size > 10 else ""
    msg = (f"{where}: {bad.size} point(s) outside the image of {shape[0]} rows x {shape[1]} "
           f"columns: {lines}{more}")
    if clip:
        logging.getLogger("napari_sseg.cli").warning("%s; clipped onto the border (--clip)", msg)
        return points.clipped(shape)
    raise ValueError(f"{msg}; fix them or pass --clip")


def _report(report, text: str) -> None:
    if report is not None:
        report(text)


def _run(gen, report, prefix: str):
    from .core.progress import run_generator

    return run_generator(gen, None if report is None else
                         (lambda e: report(f"{prefix}: {e.message}" if e.message else prefix)))


# ----------------------------------------------------------------------------- expand


def _all_or_nothing(*keys: str):
    """Decorate a task so that its outputs (the names in ``inputs[key]``: a name or a dict of
    names) appear together or not at all, and a failure removes that task's previous outputs,
    which would otherwise look current beside a record saying it failed (a rerun with
    ``--overwrite``)."""

    def deco(fn):
        @functools.wraps(fn)
        def task(inputs: dict, out_dir: Path, report=None) -> dict:
            from .io.atomic import atomic_group

            names = []
            for k in keys:
                v = inputs.get(k)
                names += list(v.values()) if isinstance(v, dict) else ([v] if v else [])
            with atomic_group(discard=[Path(out_dir) / n for n in names]):
                return fn(inputs, out_dir, report)

        return task

    return deco


@_all_or_nothing("labels_out", "overlay_out")
def expand_image(inputs: dict, out_dir: Path, report=None) -> dict:
    """Expand the points of one image into its label PNG and overlay.

    Notes
    -----
    Keys of ``inputs``:

    image : str
        Image file.
    points : dict
        :func:`points_to_inputs` of the image's points.
    labels_out, overlay_out : str
        Output names relative to ``out_dir``.
    max_id : int
        Largest class id of the whole run (keeps the label dtype the same over the batch).
    classes : list of dict
        ``[{"id", "name", "colour"}]`` for the overlay colours.
    clip : bool
        Clip points outside the image onto its border (else the task fails naming them).
    backend : dict, optional
        Backend settings for :func:`get_proposer`.
    corrections : str, optional
        Corrections file of the image (partial label image, 255 / 65535 = not corrected; see
        :mod:`napari_sseg.io.corrections`): painted pixels keep their class and guide the rest.
    survey_model : str, optional
        A survey model folder (``napari-sseg train``): its class probabilities join the
        expansion as a third expert (see :func:`napari_sseg.learn.predict.survey_prior`).
    _sources : list of str, optional
        Where each point came from (``"line 12"``), for error messages.
    _where : str, optional
        Names the points file and image in error messages.

    Returns
    -------
    dict
        ``classes`` (ids present in the points) and ``method`` of the expansion.
    """
    from .core.pipeline import iter_expand_image
    from .io import read_image, write_label_image, write_overlay
    from .io.classes import classes_from_items

    path = Path(inputs["image"])
    image = read_image(path)
    points = points_from_inputs(inputs["points"])
    points = bounded_points(points, inputs.get("_sources") or [], image.shape[:2],
                            bool(inputs.get("clip")), inputs.get("_where") or str(path))
    corrections = None
    if inputs.get("corrections"):
        from .io.corrections import read_corrections

        ids = [int(c["id"]) for c in inputs.get("classes") or []] or None
        corrections = read_corrections(inputs["corrections"], image.shape[:2], classes=ids)
    proposer, _ = get_proposer(inputs.get("backend"))
    _report(report, path.name)
    prior = {}
    if inputs.get("survey_model"):
        from .learn.predict import survey_prior

        prior = survey_prior(inputs["survey_model"], image, points.classes,
                             where=inputs.get("_where") or str(path))
    result = _run(iter_expand_image(image, points, proposer=proposer, corrections=corrections,
                                    **prior), report, path.name)
    table = classes_from_items(inputs.get("classes") or [], lambda i: f"class #{i}",
                               error=ValueError)
    write_label_image(out_dir / inputs["labels_out"], result.labels, max_id=inputs.get("max_id"))
    write_overlay(out_dir / inputs["overlay_out"], image, result.labels, table)
    return {"classes": sorted(int(c) for c in points.classes),
            "method": result.info.get("method")}


# ----------------------------------------------------------------------------- simulate


def simulation_seed(seed: int, index: int) -> int:
    """The sampling seed of one (seed, image index) pair of a simulation."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


@_all_or_nothing("masks_out")
def simulate_image(inputs: dict, out_dir: Path, report=None) -> dict:
    """Simulate a user on one image for each seed, expand, and score against the ground truth.

    Notes
    -----
    Keys of ``inputs``:

    image, ground_truth : str
        Image and class-index mask (``ground_truth`` may be ``None``: the task then fails
        with ``_missing``'s message).
    index : int
        The image's position in the run (enters the sampling seed).
    seeds : list of int
    n_points, strategy, batch_size, ignore_index
        As in :func:`napari_sseg.core.simulate.iter_simulate`.
    masks_out : dict, optional
        Seed (as a string) -> output name of the predicted mask; masks are written only when
        every seed ran.
    backend : dict, optional
    corrections, stroke_radius : int, float, optional
        Correction rounds after the expansion and the oracle's disc radius
        (:func:`napari_sseg.core.simulate.iter_simulate_corrections`).
    _missing : str, optional
        Error message when ``ground_truth`` is ``None``.

    Returns
    -------
    dict
        ``points`` (count per seed) and ``by_seed``: per seed the sampled ``coords`` and
        ``labels`` and this image's confusion ``matrix`` (rows ground truth) for the client
        to add up; with correction rounds also ``rounds``: the ``refined`` and ``manual``
        arms' confusion matrices per round and the share of painted pixels ``kept``.
    """
    from .core.metrics import ConfusionMatrix
    from .core.simulate import iter_simulate
    from .io import read_image, read_label_image, write_label_image

    path = Path(inputs["image"])
    if inputs.get("ground_truth") is None:
        raise ValueError(inputs.get("_missing") or f"no ground-truth mask for {path.name}")
    mask_path = Path(inputs["ground_truth"])
    image = read_image(path)
    gt = read_label_image(mask_path)
    if gt.shape != image.shape[:2]:
        raise ValueError(f"ground truth {mask_path} has {gt.shape[0]} rows x {gt.shape[1]} "
                         f"columns but the image has {image.shape[0]} x {image.shape[1]}")
    proposer, _ = get_proposer(inputs.get("backend"))
    ignore = inputs.get("ignore_index", 255)
    ignore = -1 if ignore is None else int(ignore)  # None: every pixel is annotated
    results = {}
    for s in inputs["seeds"]:
        prefix = f"{path.name} seed {s}"
        _report(report, prefix)
        pts, exp = _run(iter_simulate(
            image, gt, int(inputs["n_points"]), strategy=inputs.get("strategy", "random"),
            seed=simulation_seed(s, inputs["index"]), batch_size=int(inputs.get("batch_size", 5)),
            proposer=proposer, ignore_index=ignore), report, prefix)
        results[int(s)] = (pts, exp)
        if int(inputs.get("corrections") or 0) > 0:
            from .core.simulate import iter_simulate_corrections

            rounds = _run(iter_simulate_corrections(
                image, gt, pts, int(inputs["corrections"]), first=exp, proposer=proposer,
                radius=float(inputs.get("stroke_radius", 8.0)), ignore_index=ignore),
                report, prefix + " corrections")
            results[int(s)] = (pts, exp, {
                "refined": [m.tolist() for m in rounds.refined],
                "manual": [m.tolist() for m in rounds.manual], "kept": rounds.kept})
    by_seed = {}
    masks_out = inputs.get("masks_out") or {}
    for s, (pts, exp, *rounds) in results.items():
        cm = ConfusionMatrix(ignore_index=ignore)
        cm.update(gt, exp.labels)
        by_seed[str(s)] = {**points_to_inputs(pts), "matrix": cm.matrix.tolist()}
        if rounds:
            by_seed[str(s)]["rounds"] = rounds[0]
        if str(s) in masks_out:
            write_label_image(out_dir / masks_out[str(s)], exp.labels)
    return {"points": {str(s): len(r[0]) for s, r in results.items()}, "by_seed": by_seed}
