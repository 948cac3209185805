"""``napari-sseg export``: a training set (images + pseudo-label masks) from the points."""

from __future__ import annotations

import logging
from pathlib import Path

from ._common import (
    CliError,
    add_batch_args,
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
from ._validate import validate_out_dir
from .predict import unique_stems

log = logging.getLogger("napari_sseg.cli")


def add_parser(sub, common) -> None:
    """Add the ``export`` sub-command to ``sub``."""
    p = sub.add_parser(
        "export", parents=[common], help="export a training set from the expanded points",
        description="Expand the points of every image and write the images (lossless) and "
                    "pseudo-label masks for training another segmenter: --format folders "
                    "(images/, masks/ with 255 = ignore, classes.json) or nnunet (nnU-Net v2 raw "
                    "layout: imagesTr/, labelsTr/, dataset.json with an 'ignore' label).")
    p.add_argument("images", type=Path, metavar="IMAGES", help="an image file or a folder")
    p.add_argument("--points", type=Path, required=True, metavar="FILE")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--format", choices=("folders", "nnunet"), default="folders")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="C",
                   help="pixels whose expansion confidence is below C are 'ignore' (point "
                        "pixels are always labelled; default: %(default)s)")
    p.add_argument("--classes", type=Path, metavar="FILE",
                   help="classes file (JSON or CSV of id,name[,colour]) for textual labels")
    p.add_argument("--clip", action="store_true",
                   help="clip points outside the image onto its border instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_batch_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """``napari-sseg export``."""
    from ..batch import Task
    from ..io.export import export_outputs, write_dataset_info
    from ..tasks import points_to_inputs

    check_batch_args(args)
    if not 0 <= args.min_confidence <= 1:
        raise CliError(f"--min-confidence must be in [0, 1], got {args.min_confidence}")
    images = collect_images(args.images)
    validate_out_dir(args.out, images)
    unique_stems(images)
    pf = read_points(args)
    matched, unmatched = match_points(pf, images, args.points)
    if unmatched:
        log.warning("%s: %d Name(s) match no image in %s, their points are ignored: %s",
                    args.points, len(unmatched), args.images,
                    ", ".join(repr(n) for n in unmatched[:10]))
    info_file = "dataset.json" if args.format == "nnunet" else "classes.json"
    if resume_record(args, "export") is None:
        planned = [args.out / n for p in images for n in export_outputs(p.stem, p.suffix,
                                                                        args.format)]
        check_outputs(planned + [args.out / "run.json", args.out / info_file], args.overwrite)
    ids = set()
    for ps in pf.points.values():
        ids.update(int(i) for i in ps.labels)
    if not ids:
        raise CliError(f"{args.points}: no labelled points; nothing to export")
    if args.format == "folders" and max(ids) >= 255:
        raise CliError(f"{args.points}: class id {max(ids)} does not fit the 8-bit masks of "
                       f"--format folders (255 means ignore); renumber the classes")
    classes = pf.classes.to_list(ids)
    index_of = {str(c["id"]): i for i, c in enumerate(classes)}
    make_dir(args.out)
    tasks = []
    channels = set()
    for path in images:
        keys = matched.get(path)
        points, sources = points_for(pf, keys) if keys else (None, [])
        info = {"image": path.name, "points": len(points) if points is not None else 0}
        if points is None or not len(points):
            tasks.append(Task(path.name, "napari_sseg.io.export:export_image", info=info,
                              skip=f"no points in {args.points.name}; nothing written"))
            continue
        img_out, mask_out = export_outputs(path.stem, path.suffix, args.format)
        inputs = {"image": str(path), "points": points_to_inputs(points), "image_out": img_out,
                  "mask_out": mask_out, "layout": args.format,
                  "min_confidence": args.min_confidence, "index_of": index_of,
                  "clip": args.clip, "_sources": list(sources),
                  "_where": f"{args.points} ({path.name})"}
        tasks.append(Task(path.name, "napari_sseg.io.export:export_image", inputs,
                          outputs=(img_out, mask_out), files=(str(path),), info=info))
        channels.add(_channels(path))
    record = {"command": "export",
              "settings": {"images": str(args.images), "points": str(args.points),
                           "format": args.format, "min_confidence": args.min_confidence,
                           "clip": args.clip, "overwrite": args.overwrite},
              "classes": classes, "unmatched_point_names": unmatched}
    run = run_tasks(args, tasks, record=record, unit="image", desc="export")
    done = run["summary"]["ok"]
    write_dataset_info(args.out, args.format, classes, n_images=done,
                       channels=3 if 3 in channels else 1, min_confidence=args.min_confidence)
    log_summary(done, len(images), "exported", run["images"], args.out)
    return 0 if done == len(images) else 1


def _channels(path: Path) -> int:
    """Channels of an image from its header (3 unless it is grey)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return 1 if im.mode in ("L", "I", "I;16", "F", "1") else 3
    except Exception:
        return 3
