"""``napari-sseg simulate --points-per-plane N --every K``: simulated points on some planes of
stacks, the volume expansion, and scores of the planes with and without points."""

from __future__ import annotations

import logging

from ._common import (
    CliError,
    check_batch_args,
    check_outputs,
    collect_images,
    log_summary,
    make_dir,
    resume_record,
    run_tasks,
)

log = logging.getLogger("napari_sseg.cli")


def run_stacks(args, pair_masks, add_matrix) -> int:
    """Run the stack simulation; ``pair_masks(images, gt_dir)`` pairs images with masks and
    ``add_matrix(total, matrix)`` adds confusion matrices of different sizes (both from
    :mod:`.simulate`)."""
    import numpy as np

    from .. import __version__
    from ..batch import Task
    from ..core.metrics import segmentation_scores
    from ..io.atomic import atomic_write_json

    check_batch_args(args)
    if args.points_per_plane < 1:
        raise CliError(f"--points-per-plane must be at least 1, got {args.points_per_plane}")
    if args.every < 1:
        raise CliError(f"--every must be at least 1, got {args.every}")
    if args.strategy != "random":
        raise CliError("stacks are simulated with random points only (--strategy random)")
    seeds = list(dict.fromkeys(args.seeds))
    if not args.images.is_dir():
        raise CliError(f"{args.images}: no such image folder")
    images = collect_images(args.images)
    pairs = pair_masks(images, args.ground_truth)
    if resume_record(args, "simulate") is None:
        check_outputs([args.out / "metrics.json", args.out / "run.json"], args.overwrite)
    make_dir(args.out)
    ignore = args.ignore_index if isinstance(args.ignore_index, int) else 255
    tasks = []
    for idx, path in enumerate(images):
        mask = pairs[path]
        inputs = {"image": str(path), "ground_truth": str(mask) if mask else None,
                  "index": idx, "seeds": seeds, "points_per_plane": args.points_per_plane,
                  "every": args.every, "ignore_index": ignore, "axes": args.axes,
                  "spacing": list(args.spacing) if args.spacing else None,
                  "_missing": f"no ground-truth stack named {path.stem}.* in "
                              f"{args.ground_truth}"}
        tasks.append(Task(path.name, "napari_sseg.stacks:simulate_stack", inputs,
                          files=tuple(str(f) for f in (path, mask) if f),
                          info={"image": path.name}))
    record = {"command": "simulate",
              "settings": {"images": str(args.images), "ground_truth": str(args.ground_truth),
                           "points_per_plane": args.points_per_plane, "every": args.every,
                           "seeds": seeds, "ignore_index": ignore, "axes": args.axes,
                           "spacing": args.spacing},
              "backend": "superpixel volume"}
    run = run_tasks(args, tasks, record=record, unit="stack", desc="simulate stacks")

    parts = ("with", "without")
    totals = {s: {p: np.zeros((0, 0), np.int64) for p in parts} for s in seeds}
    records = []
    for e in run["images"]:
        if e["status"] == "ok":
            for s in seeds:
                for p in parts:
                    totals[s][p] = add_matrix(totals[s][p], e["by_seed"][str(s)][p])
        records.append({k: v for k, v in e.items() if k not in ("by_seed", "digest")})
    scores = {}
    for p, name in (("with", "planes_with_points"), ("without", "planes_without_points")):
        per_seed = [{"seed": s, **segmentation_scores(totals[s][p])} for s in seeds
                    if totals[s][p].sum()]
        scores[name] = {
            "miou": float(np.mean([d["miou"] for d in per_seed])) if per_seed else None,
            "pixel_accuracy": (float(np.mean([d["pixel_accuracy"] for d in per_seed]))
                               if per_seed else None),
            "per_seed": per_seed,
        }
    ok = sum(r["status"] == "ok" for r in records)
    metrics = {"version": __version__, "points_per_plane": args.points_per_plane,
               "every": args.every, "seeds": seeds, **scores,
               "images_scored": ok, "images_total": len(images), "images": records}
    atomic_write_json(args.out / "metrics.json", metrics)
    log_summary(ok, len(images), "simulated", records, args.out)
    for name, sc in scores.items():
        if sc["miou"] is not None:
            log.info("%s: mIoU %.4f", name.replace("_", " "), sc["miou"])
    return 0 if ok == len(images) else 1
