"""``napari-sseg expand``: class points to label masks, one image after another."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ._common import (
    CliError,
    add_backend_args,
    backend_from_args,
    backend_settings,
    bounded_points,
    check_outputs,
    close_bar,
    collect_images,
    log_summary,
    make_dir,
    match_points,
    points_for,
    progress_bar,
    read_points,
    record_failure,
    show_status,
)

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
    add_backend_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """``napari-sseg expand``."""
    from .. import __version__

    images = collect_images(args.images)
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems:
            raise CliError(f"{p} and {stems[p.stem]} would both write {p.stem}.png; "
                           f"rename one of them")
        stems[p.stem] = p
    pf = read_points(args)
    matched, unmatched = match_points(pf, images, args.points)
    planned = [args.out / n for p in images for n in (f"{p.stem}.png", f"{p.stem}_overlay.png")]
    planned += [args.out / "run.json", args.out / "classes.json"]
    check_outputs(planned, args.overwrite)
    if unmatched:
        shown = ", ".join(repr(n) for n in unmatched[:10])
        more = f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
        log.warning("%s: %d Name(s) match no image in %s, their points are ignored (listed in "
                    "run.json): %s%s", args.points, len(unmatched), args.images, shown, more)
    proposer, backend_desc = backend_from_args(args)
    make_dir(args.out)
    log.info("backend: %s", backend_desc)

    from ..core.pipeline import iter_expand_image
    from ..core.progress import run_generator
    from ..io import read_image, write_classes_json, write_label_image, write_overlay
    from ..io.atomic import atomic_write_json

    table = pf.classes
    all_ids = set(table.names)
    for ps in pf.points.values():
        all_ids.update(int(i) for i in ps.labels)
    max_id = max(all_ids) if all_ids else 0
    started = time.time()
    records: list[dict] = []
    bar = progress_bar(args, len(images), "image", "expand")
    interrupted = False
    for path in images:
        rec = {"image": path.name, "status": "ok", "points": 0, "seconds": 0.0}
        t0 = time.perf_counter()
        try:
            keys = matched.get(path)
            if not keys or not len(points_for(pf, keys)[0]):
                rec["status"] = "skipped"
                rec["warning"] = f"no points in {args.points.name}; nothing written"
                log.info("%s: no points in %s; skipped, nothing written", path.name,
                         args.points)
                continue
            points, sources = points_for(pf, keys)
            rec["points"] = len(points)
            image = read_image(path)
            points = bounded_points(points, sources, image.shape[:2], args.clip,
                              f"{args.points} ({path.name})")
            show_status(bar, path.name)
            result = run_generator(iter_expand_image(image, points, proposer=proposer),
                                   lambda e: show_status(bar, f"{path.name}: {e.message}"))
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
            record_failure(rec, path, exc)
        finally:
            rec["seconds"] = round(time.perf_counter() - t0, 4)
            records.append(rec)
            bar.update(1)
        if interrupted:
            break
    close_bar(bar)

    outputs = {}
    if pf.textual:
        outputs["classes_file"] = write_classes_json(args.out / "classes.json", table, all_ids).name
    run = {
        "version": __version__,
        "command": "expand",
        "settings": {"images": str(args.images), "points": str(args.points),
                     "points_format": pf.format,
                     "classes": str(args.classes) if args.classes else None,
                     "clip": args.clip, "overwrite": args.overwrite, **backend_settings(args)},
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
    log_summary(done, len(images), "expanded", records, args.out)
    return 0 if done == len(images) else 1
