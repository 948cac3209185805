"""``napari-sseg score``: score predicted masks against ground truth."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ._common import (
    CliError,
    check_outputs,
    log_summary,
)

log = logging.getLogger("napari_sseg.cli")


def add_parser(sub, common) -> None:
    """Add the ``score`` sub-command to ``sub``."""
    p = sub.add_parser("score", parents=[common], help="score predicted masks against ground truth")
    p.add_argument("pred_dir", type=Path, metavar="PRED_DIR")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR")
    p.add_argument("--ignore-index", type=int, default=255)
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the metrics JSON here")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    """``napari-sseg score``."""
    import json

    from ..core.metrics import ConfusionMatrix
    from ..io import list_images, read_label_image
    from ..io.atomic import _jsonable, atomic_write_json

    for d in (args.pred_dir, args.gt_dir):
        if not d.is_dir():
            raise CliError(f"{d}: no such folder")
    gts = list_images(args.gt_dir)
    if not gts:
        raise CliError(f"{args.gt_dir}: the folder holds no masks (.png, .tif)")
    if args.out is not None:
        check_outputs([args.out], args.overwrite)
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
    log_summary(ok, len(gts), "scored", records, None)
    return 0 if ok == len(gts) else 1
