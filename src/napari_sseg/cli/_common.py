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


def progress_bar(args, total: int, unit: str, desc: str):
    import sys

    from tqdm import tqdm

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
    from ..backends import resolve_backend

    try:
        return resolve_backend(args.backend, model=args.model, device=args.device,
                               checkpoint=args.checkpoint, cache_dir=args.cache_dir)
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


def points_for(pf, keys: list):
    """The (merged) points of ``keys`` and where each came from in the file."""
    ps = pf.points[keys[0]]
    for k in keys[1:]:
        ps = ps.appended(pf.points[k].coords, pf.points[k].labels)
    return ps, [s for k in keys for s in pf.sources.get(k, [])]


def bounded_points(points, sources, shape, clip: bool, where: str):
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
