"""``napari-sseg simulate``: a simulated user samples points from ground truth; scores.

One batch-engine task per image (:func:`napari_sseg.tasks.simulate_image`) runs every seed and
returns that image's confusion matrix and points per seed; this process adds them up into
``metrics.json`` and ``points_seed<k>.csv`` (so workers and resumed runs give the same numbers).
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
    resume_record,
    run_tasks,
)
from ._validate import simulate_ignore_index, validate_simulate
from .score import IGNORE_HELP, ignore_index_arg

log = logging.getLogger("napari_sseg.cli")


def add_parser(sub, common) -> None:
    """Add the ``simulate`` sub-command to ``sub``."""
    p = sub.add_parser("simulate", parents=[common],
                       help="simulate annotation from ground truth and score the expansion")
    p.add_argument("--images", type=Path, required=True, metavar="DIR")
    p.add_argument("--ground-truth", type=Path, required=True, metavar="DIR",
                   help="class-index masks with the same stems as the images")
    p.add_argument("--points-per-image", type=int, metavar="N",
                   help="points per 2D image (required unless --points-per-plane is given)")
    p.add_argument("--points-per-plane", type=int, metavar="N",
                   help="stacks (multi-page TIFF images and label stacks): N random points on "
                        "every K-th plane (--every), the volume expansion scored on all planes, "
                        "planes with and without points reported separately")
    p.add_argument("--every", type=int, default=1, metavar="K",
                   help="with --points-per-plane: points on planes 0, K, 2K, ... (default 1)")
    p.add_argument("--axes", metavar="AXES", help="axes of the image stacks as stored (ZYX...)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxel spacing of the stacks (default 1 1 1)")
    p.add_argument("--strategy", choices=("random", "grid", "suggest"), default="random")
    p.add_argument("--batch-size", type=int, default=5, metavar="B",
                   help="suggestions per round with --strategy suggest (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="sampling seeds; metrics are given per seed and as their mean "
                        "(default: 0 1 2)")
    p.add_argument("--corrections", type=int, default=0, metavar="R",
                   help="after the expansion, R rounds in which a simulated user paints a disc "
                        "of the true class at the innermost pixel of the largest wrong region; "
                        "metrics.json gets per-round mIoU of the refined arm (re-expanded with "
                        "all corrections) and the manual arm (disc painted in only)")
    p.add_argument("--stroke-radius", type=float, default=8.0, metavar="PX",
                   help="radius of the simulated correction discs (default: %(default)s)")
    p.add_argument("--save-masks", action="store_true",
                   help="write the predicted masks to DIR/masks/seed<k>/<stem>.png")
    p.add_argument("--ignore-index", type=ignore_index_arg, default="auto", metavar="N|none|auto",
                   help=IGNORE_HELP)
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--overwrite", action="store_true")
    add_backend_args(p)
    add_batch_args(p)
    p.set_defaults(func=run)


def _pair_masks(images: list[Path], gt_dir: Path) -> dict[Path, Path | None]:
    from ..io import list_images

    if not gt_dir.is_dir():
        raise CliError(f"{gt_dir}: no such ground-truth folder" if not gt_dir.exists() else
                       f"{gt_dir}: not a folder; --ground-truth takes the folder of the masks")
    masks: dict[str, Path] = {}
    for m in list_images(gt_dir):
        masks.setdefault(m.stem, m)
    return {p: masks.get(p.stem) for p in images}


def _mean_scores(per_seed: list[dict]) -> dict:
    import math

    import numpy as np

    out = {}
    for key in ("pixel_accuracy", "mean_class_accuracy", "miou"):
        vals = [s[key] for s in per_seed if not math.isnan(s[key])]
        out[key] = float(np.mean(vals)) if vals else float("nan")
        out[f"{key}_std"] = float(np.std(vals)) if vals else float("nan")
    for key in ("per_class_iou", "per_class_accuracy"):
        classes = sorted({c for s in per_seed for c in s[key]})
        out[key] = {c: float(np.mean([s[key][c] for s in per_seed if c in s[key]]))
                    for c in classes}
    return out


def _add_matrix(total, matrix):
    """``total + matrix`` for square confusion matrices of possibly different sizes."""
    import numpy as np

    m = np.asarray(matrix, dtype=np.int64).reshape(len(matrix), -1)
    n = max(total.shape[0], m.shape[0])
    out = np.zeros((n, n), dtype=np.int64)
    out[:total.shape[0], :total.shape[0]] += total
    out[:m.shape[0], :m.shape[0]] += m
    return out


def _add_rounds(total: dict, image: dict | None) -> None:
    """Add one image's per-round confusion matrices (both arms) into ``total``."""
    import numpy as np

    if not image:
        return
    for arm in ("refined", "manual"):
        for k, m in enumerate(image[arm]):
            if k == len(total[arm]):
                total[arm].append(np.zeros((0, 0), dtype=np.int64))
            total[arm][k] = _add_matrix(total[arm][k], m)
    total["kept"] = min(total["kept"], min(image["kept"]))


def _rounds_metrics(rounds: dict, args) -> dict:
    """Per-round mIoU of both arms, per seed and as the mean over seeds."""
    import numpy as np

    from ..core.metrics import segmentation_scores

    per_seed = {str(s): {arm: [segmentation_scores(m)["miou"] for m in r[arm]]
                         for arm in ("refined", "manual")} | {"painted_kept_min": r["kept"]}
                for s, r in rounds.items()}
    out = {"rounds": args.corrections, "stroke_radius": args.stroke_radius}
    for arm in ("refined", "manual"):
        curves = [v[arm] for v in per_seed.values() if v[arm]]
        out[f"{arm}_miou"] = ([float(x) for x in np.mean(curves, axis=0)]
                              if curves and len({len(c) for c in curves}) == 1 else [])
    out["painted_kept_min"] = min(r["kept"] for r in rounds.values())
    out["per_seed"] = per_seed
    return out


def run(args) -> int:
    """``napari-sseg simulate``."""
    import numpy as np

    from .. import __version__
    from ..batch import Task

    if args.points_per_plane is not None:
        from ._simulate_stacks import run_stacks

        return run_stacks(args, _pair_masks, _add_matrix)
    if args.points_per_image is None:
        raise CliError("give --points-per-image N (2D images) or --points-per-plane N (stacks)")
    check_batch_args(args)
    if args.points_per_image < 1:
        raise CliError(f"--points-per-image must be at least 1, got {args.points_per_image}")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.corrections < 0:
        raise CliError(f"--corrections must be at least 0, got {args.corrections}")
    if not args.stroke_radius > 0:
        raise CliError(f"--stroke-radius must be positive, got {args.stroke_radius}")
    seeds = list(dict.fromkeys(args.seeds))
    if not args.images.is_dir():
        raise CliError(f"{args.images}: no such image folder" if not args.images.exists() else
                       f"{args.images}: not a folder; --images takes the folder of the images")
    images = collect_images(args.images)
    pairs = _pair_masks(images, args.ground_truth)
    validate_simulate(args, images, [m for m in pairs.values() if m])
    if resume_record(args, "simulate") is None:
        planned = [args.out / "metrics.json", args.out / "run.json"]
        planned += [args.out / f"points_seed{s}.csv" for s in seeds]
        if args.save_masks:
            planned += [args.out / "masks" / f"seed{s}" / f"{p.stem}.png"
                        for s in seeds for p in images]
        check_outputs(planned, args.overwrite)
    if args.strategy == "suggest":
        try:
            from ..core import suggest  # noqa: F401
        except ImportError as exc:
            raise CliError(f"strategy 'suggest' is not available: {exc}") from exc
    ignore_index = simulate_ignore_index(args, [m for m in pairs.values() if m])
    _, backend_desc = backend_from_args(args)
    make_dir(args.out)

    from ..core.metrics import segmentation_scores
    from ..io import write_points_csv
    from ..io.atomic import atomic_write_json
    from ..tasks import points_from_inputs

    settings = backend_settings(args)
    tasks = []
    for idx, path in enumerate(images):
        mask = pairs[path]
        masks_out = ({str(s): f"masks/seed{s}/{path.stem}.png" for s in seeds}
                     if args.save_masks else {})
        inputs = {
            "image": str(path), "ground_truth": str(mask) if mask else None, "index": idx,
            "seeds": seeds, "n_points": args.points_per_image, "strategy": args.strategy,
            "batch_size": args.batch_size, "ignore_index": ignore_index,
            "backend": settings, "masks_out": masks_out,
            "corrections": args.corrections, "stroke_radius": args.stroke_radius,
            "_missing": f"no ground-truth mask named {path.stem}.* in {args.ground_truth}",
        }
        tasks.append(Task(path.name, "napari_sseg.tasks:simulate_image", inputs,
                          outputs=tuple(masks_out.values()),
                          files=tuple(str(f) for f in (path, mask) if f),
                          info={"image": path.name}))
    record = {
        "command": "simulate",
        "settings": {"images": str(args.images), "ground_truth": str(args.ground_truth),
                     "points_per_image": args.points_per_image, "strategy": args.strategy,
                     "batch_size": args.batch_size, "seeds": seeds,
                     "ignore_index": args.ignore_index, "save_masks": args.save_masks,
                     "corrections": args.corrections, "stroke_radius": args.stroke_radius,
                     **settings},
        "backend": backend_desc,
    }
    run = run_tasks(args, tasks, record=record, unit="image", desc=f"simulate {args.strategy}")

    # add up in the client: images that ran for every seed, in folder order
    totals = {s: np.zeros((0, 0), dtype=np.int64) for s in seeds}
    used = {s: {} for s in seeds}
    rounds = {s: {"refined": [], "manual": [], "kept": 1.0} for s in seeds}
    records = []
    for e in run["images"]:
        by_seed = e.get("by_seed") or {}
        if e["status"] == "ok":
            for s in seeds:
                totals[s] = _add_matrix(totals[s], by_seed[str(s)]["matrix"])
                used[s][e["image"]] = points_from_inputs(by_seed[str(s)])
                _add_rounds(rounds[s], by_seed[str(s)].get("rounds"))
        records.append({k: v for k, v in e.items() if k not in ("by_seed", "digest")})
    per_seed = []
    for s in seeds:
        sc = segmentation_scores(totals[s])
        per_seed.append({"seed": s, **sc})
        write_points_csv(args.out / f"points_seed{s}.csv", used[s])
    mean = _mean_scores(per_seed)
    ok = sum(r["status"] == "ok" for r in records)
    short = sorted({k for s in seeds for k, ps in used[s].items()
                    if len(ps) < args.points_per_image})
    if short:  # fewer annotated pixels than points asked for: say so, do not pass it silently
        log.warning("%d image(s) got fewer than --points-per-image %d points (they have fewer "
                    "annotated pixels; see points_seed<k>.csv): %s", len(short),
                    args.points_per_image, ", ".join(short[:10]))
    metrics = {
        "version": __version__,
        **{k: mean[k] for k in ("pixel_accuracy", "mean_class_accuracy", "miou",
                                "per_class_iou", "per_class_accuracy")},
        "std": {k: mean[f"{k}_std"] for k in ("pixel_accuracy", "mean_class_accuracy", "miou")},
        "strategy": args.strategy,
        "points_per_image": args.points_per_image,
        "batch_size": args.batch_size if args.strategy == "suggest" else None,
        "seeds": seeds,
        "backend": backend_desc,
        "settings": {"images": str(args.images), "ground_truth": str(args.ground_truth),
                     "ignore_index": ignore_index, **settings},
        "corrections": _rounds_metrics(rounds, args) if args.corrections else None,
        "images_scored": ok,
        "images_total": len(images),
        "per_seed": per_seed,
        "points_files": [f"points_seed{s}.csv" for s in seeds],
        "images": records,
    }
    atomic_write_json(args.out / "metrics.json", metrics)
    log_summary(ok, len(images), "simulated", records, args.out)
    if ok:
        log.info("mIoU %.4f, mean class accuracy %.4f, pixel accuracy %.4f (%s, %d points, "
                 "seeds %s)", metrics["miou"], metrics["mean_class_accuracy"],
                 metrics["pixel_accuracy"], args.strategy, args.points_per_image, seeds)
    return 0 if ok == len(images) else 1
