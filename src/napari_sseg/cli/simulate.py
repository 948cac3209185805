"""``napari-sseg simulate``: a simulated user samples points from ground truth; scores."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ._common import (
    CliError,
    add_backend_args,
    backend_from_args,
    backend_settings,
    check_outputs,
    close_bar,
    collect_images,
    log_summary,
    make_dir,
    progress_bar,
    record_failure,
    show_status,
)

log = logging.getLogger("napari_sseg.cli")


def add_parser(sub, common) -> None:
    """Add the ``simulate`` sub-command to ``sub``."""
    p = sub.add_parser("simulate", parents=[common],
                       help="simulate annotation from ground truth and score the expansion")
    p.add_argument("--images", type=Path, required=True, metavar="DIR")
    p.add_argument("--ground-truth", type=Path, required=True, metavar="DIR",
                   help="class-index masks with the same stems as the images (255 = ignore)")
    p.add_argument("--points-per-image", type=int, required=True, metavar="N")
    p.add_argument("--strategy", choices=("random", "grid", "suggest"), default="random")
    p.add_argument("--batch-size", type=int, default=5, metavar="B",
                   help="suggestions per round with --strategy suggest (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="sampling seeds; metrics are given per seed and as their mean "
                        "(default: 0 1 2)")
    p.add_argument("--save-masks", action="store_true",
                   help="write the predicted masks to DIR/masks/seed<k>/<stem>.png")
    p.add_argument("--ignore-index", type=int, default=255, help="unannotated ground-truth value")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--overwrite", action="store_true")
    add_backend_args(p)
    p.set_defaults(func=run)


def _pair_masks(images: list[Path], gt_dir: Path) -> dict[Path, Path | None]:
    from ..io import list_images

    if not gt_dir.is_dir():
        raise CliError(f"{gt_dir}: no such ground-truth folder")
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


def run(args) -> int:
    """``napari-sseg simulate``."""
    import numpy as np

    from .. import __version__

    if args.points_per_image < 1:
        raise CliError(f"--points-per-image must be at least 1, got {args.points_per_image}")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    seeds = list(dict.fromkeys(args.seeds))
    if not args.images.is_dir():
        raise CliError(f"{args.images}: no such image folder")
    images = collect_images(args.images)
    pairs = _pair_masks(images, args.ground_truth)
    planned = [args.out / "metrics.json"] + [args.out / f"points_seed{s}.csv" for s in seeds]
    if args.save_masks:
        planned += [args.out / "masks" / f"seed{s}" / f"{p.stem}.png"
                    for s in seeds for p in images]
    check_outputs(planned, args.overwrite)
    if args.strategy == "suggest":
        try:
            from ..core import suggest  # noqa: F401
        except ImportError as exc:
            raise CliError(f"strategy 'suggest' is not available: {exc}") from exc
    proposer, backend_desc = backend_from_args(args)
    make_dir(args.out)

    from ..core.metrics import ConfusionMatrix
    from ..core.progress import run_generator
    from ..core.simulate import iter_simulate
    from ..io import read_image, read_label_image, write_label_image, write_points_csv
    from ..io.atomic import atomic_write_json

    cms = {s: ConfusionMatrix(ignore_index=args.ignore_index) for s in seeds}
    used = {s: {} for s in seeds}
    records: list[dict] = []
    bar = progress_bar(args, len(images) * len(seeds), "expansion", f"simulate {args.strategy}")
    for idx, path in enumerate(images):
        rec = {"image": path.name, "status": "ok", "seconds": 0.0}
        t0 = time.perf_counter()
        try:
            mask_path = pairs[path]
            if mask_path is None:
                raise ValueError(f"no ground-truth mask named {path.stem}.* in {args.ground_truth}")
            image = read_image(path)
            gt = read_label_image(mask_path)
            if gt.shape != image.shape[:2]:
                raise ValueError(f"ground truth {mask_path} has {gt.shape[0]} rows x "
                                 f"{gt.shape[1]} columns but the image has {image.shape[0]} x "
                                 f"{image.shape[1]}")
            results = {}
            for s in seeds:
                # seed per (seed, image) so that results do not depend on the folder's other files
                seq = int(np.random.SeedSequence([s, idx]).generate_state(1)[0])
                show_status(bar, f"{path.name} seed {s}")
                pts, exp = run_generator(iter_simulate(
                    image, gt, args.points_per_image, strategy=args.strategy, seed=seq,
                    batch_size=args.batch_size, proposer=proposer,
                    ignore_index=args.ignore_index),
                    lambda e: show_status(bar, f"{path.name} seed {s}: {e.message}"))
                results[s] = (pts, exp)
                bar.update(1)
            for s, (pts, exp) in results.items():  # score only images that ran for every seed
                cms[s].update(gt, exp.labels)
                used[s][path.name] = pts
                if args.save_masks:
                    (args.out / "masks" / f"seed{s}").mkdir(parents=True, exist_ok=True)
                    write_label_image(args.out / "masks" / f"seed{s}" / f"{path.stem}.png",
                                      exp.labels)
            rec["points"] = {str(s): len(r[0]) for s, r in results.items()}
        except Exception as exc:
            record_failure(rec, path, exc)
        finally:
            rec["seconds"] = round(time.perf_counter() - t0, 4)
            records.append(rec)
    close_bar(bar)

    per_seed = []
    for s in seeds:
        sc = cms[s].scores()
        per_seed.append({"seed": s, **sc})
        write_points_csv(args.out / f"points_seed{s}.csv", used[s])
    mean = _mean_scores(per_seed)
    ok = sum(r["status"] == "ok" for r in records)
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
                     "ignore_index": args.ignore_index, **backend_settings(args)},
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
