"""``napari-sseg predict``: label images that have no points with a survey model."""

from __future__ import annotations

import logging
from pathlib import Path

from ._common import (
    DEVICES,
    CliError,
    add_batch_args,
    check_batch_args,
    check_outputs,
    collect_images,
    log_summary,
    make_dir,
    resume_record,
    run_tasks,
)
from ._validate import validate_out_dir

log = logging.getLogger("napari_sseg.cli")


def add_parser(sub, common) -> None:
    """Add the ``predict`` sub-command to ``sub``."""
    p = sub.add_parser("predict", parents=[common], help="label images with a survey model",
                       description="Label images with a model from 'napari-sseg train' (no "
                                   "points needed): DIR/<stem>.png (class ids), "
                                   "DIR/<stem>_overlay.png, DIR/run.json and, with "
                                   "--confidence, DIR/<stem>_confidence.tif.")
    p.add_argument("images", type=Path, metavar="IMAGES", help="an image file or a folder")
    p.add_argument("--model", type=Path, required=True, metavar="MODEL",
                   help="model folder written by 'napari-sseg train'")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--confidence", action="store_true",
                   help="also write the probability of the chosen class (float32 TIFF)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="device of a network")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_batch_args(p)
    p.set_defaults(func=run)


def unique_stems(images: list[Path]) -> None:
    """:class:`CliError` when two images would write the same ``<stem>.png``."""
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems:
            raise CliError(f"{p} and {stems[p.stem]} would both write {p.stem}.png; "
                           f"rename one of them")
        stems[p.stem] = p


def load_model_arg(folder: Path, device: str = "auto"):
    """The model of ``--model``/``--survey-model``, or :class:`CliError` naming the file."""
    from ..learn.card import ModelError
    from ..learn.predict import cached_model

    try:
        return cached_model(folder, device)
    except (ModelError, ImportError) as exc:
        raise CliError(str(exc)) from exc


def run(args) -> int:
    """``napari-sseg predict``."""
    from ..batch import Task
    from ..learn.card import file_digest

    check_batch_args(args)
    images = collect_images(args.images)
    validate_out_dir(args.out, images)
    unique_stems(images)
    model = load_model_arg(args.model, args.device)
    names = ["{}.png", "{}_overlay.png"] + (["{}_confidence.tif"] if args.confidence else [])
    if resume_record(args, "predict") is None:
        planned = [args.out / n.format(p.stem) for p in images for n in names]
        check_outputs(planned + [args.out / "run.json"], args.overwrite)
    make_dir(args.out)
    classes = [{"id": int(c), "name": n} for c, n in model.class_names.items()]
    tasks = []
    for path in images:
        outs = [n.format(path.stem) for n in names]
        inputs = {"image": str(path), "model": str(args.model), "labels_out": outs[0],
                  "overlay_out": outs[1], "max_id": int(model.classes.max()),
                  "classes": classes, "device": args.device,
                  "model_card": file_digest(args.model / "card.json")}
        if args.confidence:
            inputs["confidence_out"] = outs[2]
        tasks.append(Task(path.name, "napari_sseg.learn.predict:predict_image", inputs,
                          outputs=tuple(outs), files=(str(path),), info={"image": path.name}))
    record = {
        "command": "predict",
        "settings": {"images": str(args.images), "model": str(args.model),
                     "confidence": args.confidence, "device": args.device,
                     "overwrite": args.overwrite},
        "model": {"kind": model.kind, "labels": model.card.get("training", {}).get("labels"),
                  "validation_miou": model.card.get("validation", {}).get("miou")},
        "backend": f"survey model ({model.kind}, {args.model})",
        "classes": classes,
    }
    run = run_tasks(args, tasks, record=record, unit="image", desc="predict")
    done = run["summary"]["ok"]
    log_summary(done, len(images), "predicted", run["images"], args.out)
    return 0 if done == len(images) else 1
