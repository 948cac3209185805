"""``napari-sseg expand``: class points to label masks, one batch-engine task per image.

The command parses, matches points to images and builds one :class:`~napari_sseg.batch.Task`
per image (:func:`napari_sseg.tasks.expand_image`, settings in its ``inputs`` dict); the
engine runs them serially, on local Dask workers or on a cluster, and writes ``run.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ._common import (
    CliError,
    add_backend_args,
    add_batch_args,
    backend_from_args,
    backend_settings,
    check_batch_args,
    check_outputs,
    collect_images,
    log_summary,
    make_dir,
    match_points,
    points_for,
    read_points,
    resume_record,
    run_tasks,
)
from ._validate import validate_expand

log = logging.getLogger("napari_sseg.cli")


def add_parser(sub, common) -> None:
    """Add the ``expand`` sub-command to ``sub``."""
    p = sub.add_parser("expand", parents=[common], help="expand points into label masks",
                       description="Expand class points into DIR/<stem>.png (class ids), "
                                   "DIR/<stem>_overlay.png and DIR/run.json.")
    p.add_argument("images", type=Path, metavar="IMAGES",
                   help="an image file or a folder of images")
    p.add_argument("--points", type=Path, required=True, metavar="FILE",
                   help="CoralNet-style CSV (Name,Row,Column,Label), napari points CSV or JSON")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--classes", type=Path, metavar="FILE",
                   help="classes file (JSON or CSV of id,name[,colour]) for textual labels")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--clip", action="store_true",
                   help="clip points outside the image onto its border instead of failing")
    p.add_argument("--corrections", type=Path, metavar="DIR",
                   help="folder of corrections, DIR/<stem>.png: class ids where painted, 255 "
                        "(16-bit: 65535) elsewhere; painted pixels keep their class and guide "
                        "the rest (an image without a file there has no corrections)")
    p.add_argument("--axes", metavar="AXES",
                   help="axes of the image array as stored, one letter each: Z or T (planes), "
                        "Y, X, C (channels), e.g. ZYX for pages that are planes, CYX for pages "
                        "that are channels, YXC for a colour image (default: the file says; "
                        "several grey TIFF pages are planes)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxel spacing of a stack (plane step, row, column; e.g. 50 4 4 nm), "
                        "default 1 1 1")
    p.add_argument("--survey-model", type=Path, metavar="MODEL",
                   help="a model folder from 'napari-sseg train': its class probabilities join "
                        "the expansion as a third expert, weighted per image by the points")
    add_backend_args(p)
    add_batch_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """``napari-sseg expand``."""
    from ..batch import Task
    from ..io import remove_outputs
    from ..tasks import points_to_inputs

    check_batch_args(args)
    images = collect_images(args.images)
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems:
            raise CliError(f"{p} and {stems[p.stem]} would both write {p.stem}.png; "
                           f"rename one of them")
        stems[p.stem] = p
    if args.corrections is not None and not args.corrections.is_dir():
        raise CliError(f"{args.corrections}: no such corrections folder")
    pf = read_points(args)
    matched, unmatched = match_points(pf, images, args.points)
    stacks = plan_stacks(args, images, pf, matched)
    validate_expand(args, images, pf, matched, dims=3 if stacks else 2)
    if resume_record(args, "expand") is None:
        planned = [args.out / n for p in images
                   for n in ((f"{p.stem}.tif",) if p in stacks else
                             (f"{p.stem}.png", f"{p.stem}_overlay.png"))]
        planned += [args.out / "run.json", args.out / "classes.json"]
        check_outputs(planned, args.overwrite)
    if unmatched:
        shown = ", ".join(repr(n) for n in unmatched[:10])
        more = f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
        log.warning("%s: %d Name(s) match no image in %s, their points are ignored (listed in "
                    "run.json): %s%s", args.points, len(unmatched), args.images, shown, more)
    survey = None
    if args.survey_model is not None:
        from ..learn.card import ModelError, file_digest
        from .predict import load_model_arg

        model = load_model_arg(args.survey_model)
        ids = sorted({int(i) for ps in pf.points.values() for i in ps.labels})
        try:
            model.check_classes(ids, where=str(args.points))
        except ModelError as exc:
            raise CliError(str(exc)) from exc
        survey = {"survey_model": str(args.survey_model),
                  "survey_card": file_digest(args.survey_model / "card.json")}
    _, backend_desc = backend_from_args(args)
    make_dir(args.out)
    log.info("backend: %s", backend_desc)

    from ..io import write_classes_json
    from ..io.corrections import corrections_file

    table = pf.classes
    all_ids = set(table.names)
    for ps in pf.points.values():
        all_ids.update(int(i) for i in ps.labels)
    max_id = max(all_ids) if all_ids else 0
    settings = backend_settings(args)
    tasks = []
    for path in images:
        keys = matched.get(path)
        points, sources = points_for(pf, keys) if keys else (None, [])
        info = {"image": path.name, "points": len(points) if points is not None else 0}
        corr = corrections_file(args.corrections, path) if args.corrections else None
        if corr is not None and points is None:  # painted pixels alone are enough
            from ..core.points import PointSet

            points = PointSet.empty()
        if points is None or not (len(points) or corr is not None):
            log.info("%s: no points in %s; skipped, nothing written", path.name, args.points)
            remove_outputs([args.out / f"{path.stem}.png", args.out / f"{path.stem}_overlay.png"])
            tasks.append(Task(path.name, "napari_sseg.tasks:expand_image", info=info,
                              skip=f"no points in {args.points.name}; nothing written"))
            continue
        if path in stacks:
            from ..stacks import points_to_inputs as stack_points

            inputs = {"image": str(path), "points": stack_points(points),
                      "labels_out": f"{path.stem}.tif", "axes": args.axes,
                      "spacing": list(args.spacing) if args.spacing else None,
                      "backend": settings, "_where": str(args.points)}
            info["planes"] = stacks[path]
            tasks.append(Task(path.name, "napari_sseg.stacks:expand_stack", inputs,
                              outputs=(f"{path.stem}.tif",), files=(str(path),), info=info))
            continue
        labels_out, overlay_out = f"{path.stem}.png", f"{path.stem}_overlay.png"
        inputs = {
            "image": str(path), "points": points_to_inputs(points),
            "labels_out": labels_out, "overlay_out": overlay_out, "max_id": max_id,
            "classes": table.to_list(all_ids), "clip": args.clip, "backend": settings,
            "_sources": list(sources), "_where": f"{args.points} ({path.name})",
            **(survey or {}),
        }
        if corr is not None:
            inputs["corrections"] = str(corr)
            info["corrections"] = corr.name
        tasks.append(Task(path.name, "napari_sseg.tasks:expand_image", inputs,
                          outputs=(labels_out, overlay_out),
                          files=(str(path),) + ((str(corr),) if corr else ()), info=info))

    outputs = {}
    if pf.textual:
        outputs["classes_file"] = write_classes_json(args.out / "classes.json", table, all_ids).name
    record = {
        "command": "expand",
        "settings": {"images": str(args.images), "points": str(args.points),
                     "points_format": pf.format,
                     "classes": str(args.classes) if args.classes else None,
                     "clip": args.clip, "overwrite": args.overwrite,
                     "corrections": str(args.corrections) if args.corrections else None,
                     "axes": args.axes, "spacing": args.spacing,
                     "survey_model": str(args.survey_model) if args.survey_model else None,
                     **settings},
        "backend": backend_desc,
        "classes": table.to_list(all_ids),
        "textual_labels": pf.textual,
        "unmatched_point_names": unmatched,
        **outputs,
    }
    run = run_tasks(args, tasks, record=record, unit="image", desc="expand")
    done = run["summary"]["ok"]
    log_summary(done, len(images), "expanded", run["images"], args.out)
    return 0 if done == len(images) else 1


def plan_stacks(args, images: list[Path], pf, matched: dict) -> dict:
    """Stacks among ``images`` (path -> number of planes), checked against their points.

    A stack (a multi-page TIFF, or ``--axes`` with a plane axis) needs points with planes and a
    2D image points without; anything else fails here, before a file is written, with a message
    naming how the file was read and how to say otherwise. Ambiguous files are read as their
    metadata says, with a warning naming the ``--axes`` that says otherwise.
    """
    from ..io.images import ImageReadError, probe_image_axes
    from ..stacks import check_stack_points

    stacks: dict[Path, int] = {}
    problems = []
    for path in images:
        keys = matched.get(path)
        points = points_for(pf, keys)[0] if keys else None
        try:
            read = probe_image_axes(path, axes=args.axes)
        except ImageReadError as exc:
            if args.axes:
                problems.append(str(exc))
            continue  # an unreadable image fails in its own task
        if points is not None and len(points):
            try:
                check_stack_points(read, points, image=path.name, points_name=str(args.points))
            except ValueError as exc:
                problems.append(str(exc))
                continue
        if read.note and (read.is_stack or pf.ndim == 3):
            log.warning("%s", read.note)
        if read.is_stack:
            stacks[path] = int(read.data.shape[0])
            if args.spacing is None:
                log.info("%s: voxel spacing 1 1 1 assumed (pass --spacing Z Y X)", path.name)
    if problems:
        raise CliError("\n".join(problems))
    return stacks
