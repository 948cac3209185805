"""Command line: ``napari-sseg expand | simulate | score | suggest``.

Exit codes: 0 when every image succeeded, 1 when at least one image failed or was skipped
(the batch still runs to the end and the summary names each one), 2 for bad usage or input that
stops the run before any image is processed (unreadable points file, empty folder, outputs that
exist without ``--overwrite``, unavailable backend).

Importing this module imports neither torch, Qt nor napari; heavy modules load when a command
needs them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("napari_sseg.cli")

__all__ = ["main", "build_parser"]

BACKENDS = ("auto", "superpixel", "sam2")
MODELS = ("tiny", "small", "base_plus", "large")
DEVICES = ("auto", "cpu", "cuda", "mps")


class CliError(Exception):
    """Input that stops the whole command (exit code 2)."""


# ------------------------------------------------------------------------------------ parser


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="mask proposer: auto (SAM2 when a checkpoint is found, else superpixel), "
                        "superpixel (weight-free) or sam2 (default: %(default)s)")
    g.add_argument("--model", choices=MODELS, default="tiny", help="SAM2 model size")
    g.add_argument("--device", choices=DEVICES, default="auto", help="SAM2 device")
    g.add_argument("--checkpoint", type=Path, help="SAM2 checkpoint file")
    g.add_argument("--cache-dir", type=Path, help="folder for cached image embeddings")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-sseg`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="napari-sseg",
        description="Turn class-labelled points into dense label masks, evaluate, suggest points.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars or informational messages (warnings still shown)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug messages")

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
    _add_backend_args(p)
    p.set_defaults(func=cmd_expand)

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
    _add_backend_args(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("score", parents=[common], help="score predicted masks against ground truth")
    p.add_argument("pred_dir", type=Path, metavar="PRED_DIR")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR")
    p.add_argument("--ignore-index", type=int, default=255)
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the metrics JSON here")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("suggest", parents=[common], help="propose the next points to label",
                       description="Writes K suggested points without labels: a CoralNet-style "
                                   "CSV (Name,Row,Column with an empty Label to fill in) or, for "
                                   "a .json FILE, the JSON schema with \"label\": null.")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("--points", type=Path, metavar="FILE",
                   help="points labelled so far (none: suggest a first batch)")
    p.add_argument("-n", type=int, required=True, metavar="K", dest="n")
    p.add_argument("--out", type=Path, required=True, metavar="FILE")
    p.add_argument("--classes", type=Path, metavar="FILE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    _add_backend_args(p)
    p.set_defaults(func=cmd_suggest)
    return parser


# ------------------------------------------------------------------------------ entry point


class _Handler(logging.Handler):
    """Writes through tqdm so messages do not break progress bars."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno >= logging.WARNING:
                msg = f"{record.levelname.lower()}: {msg}"
            from tqdm import tqdm

            tqdm.write(f"napari-sseg: {msg}", file=self.stream)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 only when every image succeeded)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    pkg_log = logging.getLogger("napari_sseg")
    handler = _Handler(sys.stderr)
    handler.setLevel(logging.DEBUG if args.verbose else
                     logging.WARNING if args.quiet else logging.INFO)
    old_level = pkg_log.level
    pkg_log.addHandler(handler)
    pkg_log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except CliError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; outputs already written are complete, the rest were not written")
        return 130
    finally:
        pkg_log.removeHandler(handler)
        pkg_log.setLevel(old_level)


# ----------------------------------------------------------------------------------- helpers


def _progress(args, total: int, unit: str, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, disable=args.quiet, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def _close(bar) -> None:
    """Draw the bar's final count (tqdm skips redraws within 0.1 s of the last), then clear it."""
    bar.refresh()
    bar.close()


def _status(bar, text: str) -> None:
    """Show what is being done in the bar's postfix, redrawing at most twice a second."""
    bar.set_postfix_str(text, refresh=False)
    now = time.monotonic()
    if not bar.disable and now - getattr(bar, "_sseg_drawn", 0.0) > 0.5:
        bar._sseg_drawn = now
        bar.refresh()


def _collect_images(path: Path) -> list[Path]:
    from .io import list_images

    if not path.exists():
        raise CliError(f"{path}: no such file or folder")
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise CliError(f"{path}: the folder holds no images (.png, .jpg, .tif, .bmp)")
        return images
    return [path]


def _check_outputs(paths: list[Path], overwrite: bool) -> None:
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        shown = ", ".join(str(p) for p in existing[:5])
        more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        raise CliError(
            f"refusing to overwrite existing output {shown}{more}; pass --overwrite to replace "
            f"(nothing was written)"
        )


def _make_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise CliError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"{path}: cannot create output folder: {exc}") from exc


def _resolve_backend(args):
    from .backends import resolve_backend

    try:
        return resolve_backend(args.backend, model=args.model, device=args.device,
                               checkpoint=args.checkpoint, cache_dir=args.cache_dir)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError, OSError) as exc:
        raise CliError(f"backend {args.backend!r}: {exc}") from exc


def _backend_settings(args) -> dict:
    return {"backend": args.backend, "model": args.model, "device": args.device,
            "checkpoint": str(args.checkpoint) if args.checkpoint else None,
            "cache_dir": str(args.cache_dir) if args.cache_dir else None}


def _read_points(args):
    from .io import ClassesFileError, PointsFileError, read_classes, read_points_file

    try:
        classes = read_classes(args.classes) if args.classes else None
        return read_points_file(args.points, classes=classes)
    except (PointsFileError, ClassesFileError) as exc:
        raise CliError(str(exc)) from exc


def _match_points(pf, images: list[Path], points_path: Path) -> tuple[dict, list[str]]:
    """Map each image to the keys of its points in ``pf``; returns (image -> keys, unmatched).

    A Name matches an image by file name, then case-insensitively, then by stem; folders in the
    Name are ignored. Several Names matching one image have their points merged.
    """
    keys = list(pf.points)
    if keys == [None]:
        if len(images) != 1:
            raise CliError(
                f"{points_path}: a {pf.format} points file without image names holds the "
                f"points of one image; give one image file, not {len(images)} images"
            )
        return {images[0]: [None]}, []
    by_name = {p.name: p for p in images}
    by_lower: dict[str, list[Path]] = {}
    by_stem: dict[str, list[Path]] = {}
    for p in images:
        by_lower.setdefault(p.name.lower(), []).append(p)
        by_stem.setdefault(p.stem.lower(), []).append(p)
    matched: dict[Path, list] = {}
    unmatched: list[str] = []
    for key in keys:
        name = Path(str(key).replace("\\", "/")).name
        cands = ([by_name[name]] if name in by_name else by_lower.get(name.lower())
                 or by_stem.get(Path(name).stem.lower()) or [])
        if len(cands) == 1:
            matched.setdefault(cands[0], []).append(key)
        else:
            unmatched.append(str(key))
    return matched, unmatched


def _points_for(pf, keys: list):
    """The (merged) points of ``keys`` and where each came from in the file."""
    ps = pf.points[keys[0]]
    for k in keys[1:]:
        ps = ps.appended(pf.points[k].coords, pf.points[k].labels)
    return ps, [s for k in keys for s in pf.sources.get(k, [])]


def _bounded(points, sources, shape, clip: bool, where: str):
    """Points inside ``shape``: clipped with a warning, or an error naming the file lines."""
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
        log.warning("%s; clipped onto the border (--clip)", msg)
        return points.clipped(shape)
    raise ValueError(f"{msg}; fix them or pass --clip")


def _record_failure(rec: dict, path: Path, exc: Exception) -> None:
    """Mark one image's record as failed (the batch goes on; the summary names it)."""
    rec["status"] = "failed"
    rec["error"] = str(exc) or type(exc).__name__
    log.info("%s: failed: %s", path.name, rec["error"])
    log.debug("traceback", exc_info=True)


def _summary(done: int, total: int, what: str, records: list[dict], out: Path | None) -> None:
    failed = [r for r in records if r["status"] == "failed"]
    skipped = [r for r in records if r["status"] == "skipped"]
    where = f" into {out}" if out is not None else ""
    log.info("%s %d of %d image(s)%s; %d failed, %d skipped", what, done, total, where,
             len(failed), len(skipped))
    for r in failed:  # every failure, by name, at the end
        log.error("failed: %s: %s", r["image"], r["error"])
    if skipped:
        names = ", ".join(r["image"] for r in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        log.warning("skipped %d image(s) with no points (nothing written for them): %s%s",
                    len(skipped), names, more)


# ------------------------------------------------------------------------------------ expand


def cmd_expand(args) -> int:
    """``napari-sseg expand``."""
    from . import __version__

    images = _collect_images(args.images)
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems:
            raise CliError(f"{p} and {stems[p.stem]} would both write {p.stem}.png; "
                           f"rename one of them")
        stems[p.stem] = p
    pf = _read_points(args)
    matched, unmatched = _match_points(pf, images, args.points)
    planned = [args.out / n for p in images for n in (f"{p.stem}.png", f"{p.stem}_overlay.png")]
    planned += [args.out / "run.json", args.out / "classes.json"]
    _check_outputs(planned, args.overwrite)
    if unmatched:
        shown = ", ".join(repr(n) for n in unmatched[:10])
        more = f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
        log.warning("%s: %d Name(s) match no image in %s, their points are ignored (listed in "
                    "run.json): %s%s", args.points, len(unmatched), args.images, shown, more)
    proposer, backend_desc = _resolve_backend(args)
    _make_dir(args.out)
    log.info("backend: %s", backend_desc)

    from .core.pipeline import iter_expand_image
    from .core.progress import run_generator
    from .io import read_image, write_classes_json, write_label_image, write_overlay
    from .io.atomic import atomic_write_json

    table = pf.classes
    all_ids = set(table.names)
    for ps in pf.points.values():
        all_ids.update(int(i) for i in ps.labels)
    max_id = max(all_ids) if all_ids else 0
    started = time.time()
    records: list[dict] = []
    bar = _progress(args, len(images), "image", "expand")
    interrupted = False
    for path in images:
        rec = {"image": path.name, "status": "ok", "points": 0, "seconds": 0.0}
        t0 = time.perf_counter()
        try:
            keys = matched.get(path)
            if not keys or not len(_points_for(pf, keys)[0]):
                rec["status"] = "skipped"
                rec["warning"] = f"no points in {args.points.name}; nothing written"
                log.info("%s: no points in %s; skipped, nothing written", path.name,
                         args.points)
                continue
            points, sources = _points_for(pf, keys)
            rec["points"] = len(points)
            image = read_image(path)
            points = _bounded(points, sources, image.shape[:2], args.clip,
                              f"{args.points} ({path.name})")
            _status(bar, path.name)
            result = run_generator(iter_expand_image(image, points, proposer=proposer),
                                   lambda e: _status(bar, f"{path.name}: {e.message}"))
            label_path = write_label_image(args.out / f"{path.stem}.png", result.labels,
                                           max_id=max_id)
            overlay_path = write_overlay(args.out / f"{path.stem}_overlay.png", image,
                                         result.labels, table)
            rec["outputs"] = [label_path.name, overlay_path.name]
            rec["classes"] = sorted(int(c) for c in points.classes)
            rec["method"] = result.info.get("method")
        except KeyboardInterrupt:
            rec["status"] = "failed"
            rec["error"] = "interrupted"
            interrupted = True
        except Exception as exc:  # one bad image never stops the batch
            _record_failure(rec, path, exc)
        finally:
            rec["seconds"] = round(time.perf_counter() - t0, 4)
            records.append(rec)
            bar.update(1)
        if interrupted:
            break
    _close(bar)

    outputs = {}
    if pf.textual:
        outputs["classes_file"] = write_classes_json(args.out / "classes.json", table, all_ids).name
    run = {
        "version": __version__,
        "command": "expand",
        "settings": {"images": str(args.images), "points": str(args.points),
                     "points_format": pf.format,
                     "classes": str(args.classes) if args.classes else None,
                     "clip": args.clip, "overwrite": args.overwrite, **_backend_settings(args)},
        "backend": backend_desc,
        "classes": table.to_list(all_ids),
        "textual_labels": pf.textual,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 3),
        "images": records,
        "interrupted": interrupted,
        "unmatched_point_names": unmatched,
        "summary": {s: sum(r["status"] == s for r in records) for s in ("ok", "failed", "skipped")},
        **outputs,
    }
    atomic_write_json(args.out / "run.json", run)
    if interrupted:  # run.json lists what was finished; main() reports the interruption
        raise KeyboardInterrupt
    done = run["summary"]["ok"]
    _summary(done, len(images), "expanded", records, args.out)
    return 0 if done == len(images) else 1


# ---------------------------------------------------------------------------------- simulate


def _pair_masks(images: list[Path], gt_dir: Path) -> dict[Path, Path | None]:
    from .io import list_images

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


def cmd_simulate(args) -> int:
    """``napari-sseg simulate``."""
    import numpy as np

    from . import __version__

    if args.points_per_image < 1:
        raise CliError(f"--points-per-image must be at least 1, got {args.points_per_image}")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    seeds = list(dict.fromkeys(args.seeds))
    if not args.images.is_dir():
        raise CliError(f"{args.images}: no such image folder")
    images = _collect_images(args.images)
    pairs = _pair_masks(images, args.ground_truth)
    planned = [args.out / "metrics.json"] + [args.out / f"points_seed{s}.csv" for s in seeds]
    if args.save_masks:
        planned += [args.out / "masks" / f"seed{s}" / f"{p.stem}.png"
                    for s in seeds for p in images]
    _check_outputs(planned, args.overwrite)
    if args.strategy == "suggest":
        try:
            from .core import suggest  # noqa: F401
        except ImportError as exc:
            raise CliError(f"strategy 'suggest' is not available: {exc}") from exc
    proposer, backend_desc = _resolve_backend(args)
    _make_dir(args.out)

    from .core.metrics import ConfusionMatrix
    from .core.progress import run_generator
    from .core.simulate import iter_simulate
    from .io import read_image, read_label_image, write_label_image, write_points_csv
    from .io.atomic import atomic_write_json

    cms = {s: ConfusionMatrix(ignore_index=args.ignore_index) for s in seeds}
    used = {s: {} for s in seeds}
    records: list[dict] = []
    bar = _progress(args, len(images) * len(seeds), "expansion", f"simulate {args.strategy}")
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
                _status(bar, f"{path.name} seed {s}")
                pts, exp = run_generator(iter_simulate(
                    image, gt, args.points_per_image, strategy=args.strategy, seed=seq,
                    batch_size=args.batch_size, proposer=proposer,
                    ignore_index=args.ignore_index),
                    lambda e: _status(bar, f"{path.name} seed {s}: {e.message}"))
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
            _record_failure(rec, path, exc)
        finally:
            rec["seconds"] = round(time.perf_counter() - t0, 4)
            records.append(rec)
    _close(bar)

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
                     "ignore_index": args.ignore_index, **_backend_settings(args)},
        "images_scored": ok,
        "images_total": len(images),
        "per_seed": per_seed,
        "points_files": [f"points_seed{s}.csv" for s in seeds],
        "images": records,
    }
    atomic_write_json(args.out / "metrics.json", metrics)
    _summary(ok, len(images), "simulated", records, args.out)
    if ok:
        log.info("mIoU %.4f, mean class accuracy %.4f, pixel accuracy %.4f (%s, %d points, "
                 "seeds %s)", metrics["miou"], metrics["mean_class_accuracy"],
                 metrics["pixel_accuracy"], args.strategy, args.points_per_image, seeds)
    return 0 if ok == len(images) else 1


# ------------------------------------------------------------------------------------- score


def cmd_score(args) -> int:
    """``napari-sseg score``."""
    import json

    from .core.metrics import ConfusionMatrix
    from .io import list_images, read_label_image
    from .io.atomic import _jsonable, atomic_write_json

    for d in (args.pred_dir, args.gt_dir):
        if not d.is_dir():
            raise CliError(f"{d}: no such folder")
    gts = list_images(args.gt_dir)
    if not gts:
        raise CliError(f"{args.gt_dir}: the folder holds no masks (.png, .tif)")
    if args.out is not None:
        _check_outputs([args.out], args.overwrite)
    preds: dict[str, Path] = {}
    for p in list_images(args.pred_dir):
        if not p.stem.endswith("_overlay"):
            preds.setdefault(p.stem, p)
    cm = ConfusionMatrix(ignore_index=args.ignore_index)
    records = []
    for gt_path in gts:
        rec = {"image": gt_path.name, "status": "ok"}
        try:
            pred_path = preds.get(gt_path.stem)
            if pred_path is None:
                raise ValueError(f"no prediction named {gt_path.stem}.* in {args.pred_dir}")
            gt = read_label_image(gt_path)
            pred = read_label_image(pred_path)
            if gt.shape != pred.shape:
                raise ValueError(f"prediction {pred_path.name} has shape {pred.shape} but the "
                                 f"ground truth has shape {gt.shape}")
            cm.update(gt, pred)
        except Exception as exc:
            rec["status"] = "failed"
            rec["error"] = str(exc)
            log.info("%s: failed: %s", gt_path.name, exc)
        records.append(rec)
    extra = sorted(set(preds) - {g.stem for g in gts})
    if extra:
        log.warning("%d prediction(s) without ground truth ignored: %s", len(extra),
                    ", ".join(extra[:10]))
    ok = sum(r["status"] == "ok" for r in records)
    result = {**cm.scores(), "images_scored": ok, "images_total": len(gts),
              "ignore_index": args.ignore_index, "images": records}
    if args.out is not None:
        atomic_write_json(args.out, result)
    sys.stdout.write(json.dumps(_jsonable(result), indent=2) + "\n")
    _summary(ok, len(gts), "scored", records, None)
    return 0 if ok == len(gts) else 1


# ----------------------------------------------------------------------------------- suggest


def cmd_suggest(args) -> int:
    """``napari-sseg suggest``."""
    from .io import read_image, write_unlabelled_points

    if args.n < 1:
        raise CliError(f"-n must be at least 1, got {args.n}")
    if not args.image.is_file():
        raise CliError(f"{args.image}: no such image file")
    _check_outputs([args.out], args.overwrite)
    try:
        from .core.suggest import suggest_points
    except ImportError as exc:
        raise CliError(f"suggestions are not available: {exc}") from exc
    from .core.points import PointSet

    points, sources = PointSet.empty(), []
    if args.points is not None:
        pf = _read_points(args)
        matched, _ = _match_points(pf, [args.image], args.points)
        if args.image in matched:
            points, sources = _points_for(pf, matched[args.image])
        else:
            log.warning("%s: no points for %s; suggesting a first batch", args.points,
                        args.image.name)
    proposer, backend_desc = _resolve_backend(args)

    from .core.pipeline import iter_expand_image
    from .core.progress import run_generator

    try:
        image = read_image(args.image)
        points = _bounded(points, sources, image.shape[:2], args.clip, str(args.points))
        expansion = None
        if len(points):
            expansion = run_generator(iter_expand_image(image, points, proposer=proposer))
        coords = suggest_points(image, points, expansion, args.n, seed=args.seed)
    except ValueError as exc:
        raise CliError(f"{args.image}: {exc}") from exc
    if args.out.parent and not args.out.parent.exists():
        _make_dir(args.out.parent)
    write_unlabelled_points(args.out, args.image.name, coords)
    log.info("wrote %d suggested point(s) for %s to %s (backend: %s)", len(coords),
             args.image.name, args.out, backend_desc)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
