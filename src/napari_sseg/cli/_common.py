"""Helpers shared by the sub-commands: errors, progress bars, inputs, outputs, summaries."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger("napari_sseg.cli")

BACKENDS = ("auto", "superpixel", "sam2")
MODELS = ("tiny", "small", "base_plus", "large")
DEVICES = ("auto", "cpu", "cuda", "mps")


class CliError(Exception):
    """Input that stops the whole command (exit code 2)."""


def add_backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="mask proposer: auto (SAM2 when a checkpoint is found, else superpixel), "
                        "superpixel (weight-free) or sam2 (default: %(default)s)")
    g.add_argument("--model", choices=MODELS, default="tiny", help="SAM2 model size")
    g.add_argument("--device", choices=DEVICES, default="auto", help="SAM2 device")
    g.add_argument("--checkpoint", type=Path, help="SAM2 checkpoint file")
    g.add_argument("--cache-dir", type=Path, help="folder for cached image embeddings")


def add_batch_args(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--scheduler`` and ``--resume`` of a command run by the batch engine."""
    g = p.add_argument_group("batch")
    g.add_argument("--workers", type=int, default=1, metavar="N",
                   help="1 (default): one image after another in this process; N > 1: a local "
                        "Dask cluster of N single-threaded worker processes")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://host:8786 (workers started "
                        "with `dask worker ADDRESS` or dask-jobqueue)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in the same output folder: images whose "
                        "outputs match run.json and whose inputs are unchanged are kept, the "
                        "rest are redone")


def check_batch_args(args) -> None:
    if args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    if args.scheduler and args.workers != 1:
        raise CliError("give --workers N (a local cluster) or --scheduler ADDRESS (an existing "
                       "one), not both")


def resume_record(args, command: str, record_name: str = "run.json") -> dict | None:
    """The previous record to resume (``--resume``), or ``None`` (then outputs are checked)."""
    from ..batch import load_record

    if not args.resume:
        return None
    path = args.out / record_name
    prev = load_record(path)
    if prev is None:
        if path.exists():
            raise CliError(f"{path}: cannot read the record of the run to resume; remove it or "
                           f"choose another --out")
        log.info("--resume: no %s in %s, starting a new run", record_name, args.out)
        return None
    if prev.get("command") != command:
        raise CliError(f"{path} records a {prev.get('command')!r} run, not {command!r}; "
                       f"choose another --out")
    return prev


def run_tasks(args, tasks: list, *, record: dict, unit: str, desc: str,
              record_name: str = "run.json") -> dict:
    """Run ``tasks`` with the batch engine, a tqdm bar counting finished tasks; the record.

    Another front end (the napari widget) that runs a command's ``run(args)`` may set
    ``args.on_progress`` (called as the engine's ``progress``) and ``args.cancel``.
    """
    from ..batch import BatchError, run_batch

    bar = progress_bar(args, len(tasks), unit, desc)
    extra = getattr(args, "on_progress", None)

    def progress(done: int, total: int, entry: dict) -> None:
        bar.update(1)
        show_status(bar, f"{entry.get('key')} {entry['status']}")
        if extra is not None:
            extra(done, total, entry)

    try:
        return run_batch(tasks, args.out, record=record, record_name=record_name,
                         workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                         progress=progress, status=lambda key, msg: show_status(bar, msg),
                         cancel=getattr(args, "cancel", None))
    except BatchError as exc:
        raise CliError(str(exc)) from exc
    finally:
        close_bar(bar)


def progress_bar(args, total: int, unit: str, desc: str):
    import sys

    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: a local Dask cluster forks this process
    return tqdm(total=total, unit=unit, desc=desc, disable=args.quiet, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def close_bar(bar) -> None:
    """Draw the bar's final count (tqdm skips redraws within 0.1 s of the last), then clear it."""
    bar.refresh()
    bar.close()


def show_status(bar, text: str) -> None:
    """Show what is being done in the bar's postfix, redrawing at most twice a second."""
    bar.set_postfix_str(text, refresh=False)
    now = time.monotonic()
    if not bar.disable and now - getattr(bar, "_sseg_drawn", 0.0) > 0.5:
        bar._sseg_drawn = now
        bar.refresh()


def collect_images(path: Path) -> list[Path]:
    from ..io import list_images

    if not path.exists():
        raise CliError(f"{path}: no such file or folder")
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise CliError(f"{path}: the folder holds no images (.png, .jpg, .tif, .bmp)")
        return images
    from ..io import IMAGE_SUFFIXES

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise CliError(f"{path}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
    return [path]


def check_outputs(paths: list[Path], overwrite: bool) -> None:
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


def make_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise CliError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"{path}: cannot create output folder: {exc}") from exc


def backend_from_args(args):
    from ..tasks import get_proposer

    try:  # built once per process: serial tasks with the same settings reuse it
        return get_proposer(backend_settings(args))
    except (ValueError, FileNotFoundError, ImportError, RuntimeError, OSError) as exc:
        raise CliError(f"backend {args.backend!r}: {exc}") from exc


def backend_settings(args) -> dict:
    return {"backend": args.backend, "model": args.model, "device": args.device,
            "checkpoint": str(args.checkpoint) if args.checkpoint else None,
            "cache_dir": str(args.cache_dir) if args.cache_dir else None}


def read_points(args):
    from ..io import ClassesFileError, PointsFileError, read_classes, read_points_file

    try:
        classes = read_classes(args.classes) if args.classes else None
        return read_points_file(args.points, classes=classes)
    except (PointsFileError, ClassesFileError) as exc:
        raise CliError(str(exc)) from exc


def match_points(pf, images: list[Path], points_path: Path) -> tuple[dict, list[str]]:
    """Map each image to the keys of its points in ``pf``; returns (image -> keys, unmatched).

    A Name matches an image by file name, then case-insensitively, then by stem; folders in the
    Name are ignored. Several Names matching one image have their points merged.
    """
    keys = list(pf.points)
    if keys == [None] and not len(pf.points[None]):
        return {}, []  # no points at all: the caller says so (validate.check_points)
    if keys == [None]:
        if len(images) != 1:
            raise CliError(
                f"{points_path}: a {pf.format} points file without image names holds the "
                f"points of one image; give one image file, not {len(images)} images"
            )
        return {images[0]: [None]}, []
    from ..validate import nfc  # names compared in Unicode NFC: macOS writes file names in NFD

    by_name = {nfc(p.name): p for p in images}
    by_lower: dict[str, list[Path]] = {}
    by_stem: dict[str, list[Path]] = {}
    for p in images:
        by_lower.setdefault(nfc(p.name).lower(), []).append(p)
        by_stem.setdefault(nfc(p.stem).lower(), []).append(p)
    matched: dict[Path, list] = {}
    unmatched: list[str] = []
    for key in keys:
        name = nfc(Path(str(key).replace("\\", "/")).name)
        cands = ([by_name[name]] if name in by_name else by_lower.get(name.lower())
                 or by_stem.get(Path(name).stem.lower()) or [])
        if len(cands) == 1:
            matched.setdefault(cands[0], []).append(key)
        else:
            unmatched.append(str(key))
    return matched, unmatched


def points_for(pf, keys: list):
    """The (merged) points of ``keys`` and where each came from in the file."""
    ps = pf.points[keys[0]]
    for k in keys[1:]:
        ps = ps.appended(pf.points[k].coords, pf.points[k].labels, pf.points[k].planes)
    return ps, [s for k in keys for s in pf.sources.get(k, [])]


def bounded_points(points, sources, shape, clip: bool, where: str):
    """Points inside ``shape``: clipped with a warning, or an error naming the file lines."""
    from ..tasks import bounded_points as bounded

    return bounded(points, sources, shape, clip, where)


def record_failure(rec: dict, path: Path, exc: Exception) -> None:
    """Mark one image's record as failed (the batch goes on; the summary names it)."""
    rec["status"] = "failed"
    rec["error"] = str(exc) or type(exc).__name__
    log.info("%s: failed: %s", path.name, rec["error"])
    log.debug("traceback", exc_info=True)


def log_summary(done: int, total: int, what: str, records: list[dict], out: Path | None) -> None:
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
