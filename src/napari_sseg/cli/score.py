"""``napari-sseg score``: score predicted masks against ground truth."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ._common import (
    CliError,
    check_outputs,
    log_summary,
)

log = logging.getLogger("napari_sseg.cli")


def ignore_index_arg(text: str):
    """``--ignore-index``: ``auto``, ``none`` or a class value of 0 or more."""
    low = text.strip().lower()
    if low in ("auto", "none"):
        return low
    try:
        value = int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'none' or a value of 0 or more, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a value of 0 or more, got {value}")
    return value


IGNORE_HELP = ("ground-truth value that marks pixels not annotated (not scored): N, 'none' (score "
               "every pixel) or 'auto' (default: 255, unless the masks are 0/255 binary masks or "
               "the predictions contain 255, where 255 is a class; what was assumed is said)")


def add_parser(sub, common) -> None:
    """Add the ``score`` sub-command to ``sub``."""
    p = sub.add_parser("score", parents=[common], help="score predicted masks against ground truth",
                       description="Score the class-index masks of PRED_DIR against those of "
                                   "GT_DIR with the same stems (overlays are left out): pixel "
                                   "accuracy, mean class accuracy, mIoU and IoU per class, as "
                                   "JSON on stdout.")
    p.add_argument("pred_dir", type=Path, metavar="PRED_DIR")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR")
    p.add_argument("--ignore-index", type=ignore_index_arg, default="auto", metavar="N|none|auto",
                   help=IGNORE_HELP)
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the metrics JSON here")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def report_ignore(choice) -> None:
    """Say what was assumed about the ignore index (a warning when it is a guess to check)."""
    if choice.note:
        (log.warning if choice.warn else log.info)("%s", choice.note)


def run(args) -> int:
    """``napari-sseg score``."""
    import json

    from ..core.metrics import ConfusionMatrix, choose_ignore_index, scoring_problems
    from ..io import list_images, read_label_image
    from ..io.atomic import _jsonable, atomic_write_json
    from ..validate import check_not_inputs, check_writable

    for d in (args.pred_dir, args.gt_dir):
        if not d.is_dir():
            raise CliError(f"{d}: no such folder" if not d.exists() else
                           f"{d}: not a folder; give the folder of the masks")
    if args.pred_dir.resolve() == args.gt_dir.resolve():
        raise CliError(f"PRED_DIR and GT_DIR are the same folder ({args.gt_dir}): every mask "
                       f"would be scored against itself")
    gts = list_images(args.gt_dir)
    if not gts:
        raise CliError(f"{args.gt_dir}: the folder holds no masks (.png, .tif)")
    preds: dict[str, Path] = {}
    for p in list_images(args.pred_dir):
        if not p.stem.endswith("_overlay"):
            preds.setdefault(p.stem, p)
    if args.out is not None:
        check_not_inputs([args.out], [*gts, *preds.values()], example="metrics.json")
        check_writable(args.out.parent if str(args.out.parent) else Path("."))
        check_outputs([args.out], args.overwrite)
    if not set(preds) & {g.stem for g in gts}:
        raise CliError(f"no prediction in {args.pred_dir} has the name of a mask in "
                       f"{args.gt_dir} (for example {gts[0].stem}.png); nothing to score")
    per_image: dict[str, ConfusionMatrix] = {}
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
            cm = ConfusionMatrix(ignore_index=None)  # the ignore index is chosen over all images
            cm.update(gt, pred)
            per_image[gt_path.name] = cm
        except Exception as exc:
            rec["status"] = "failed"
            rec["error"] = str(exc)
            log.info("%s: failed: %s", gt_path.name, exc)
        records.append(rec)
    total = ConfusionMatrix(ignore_index=None)
    for cm in per_image.values():
        total.add(cm)
    gt_counts, pred_counts = total.values()
    choice = choose_ignore_index(gt_counts, pred_counts, requested=args.ignore_index)
    report_ignore(choice)
    for rec in records:  # an image whose ground truth is all "not annotated" scores nothing
        cm = per_image.get(rec["image"])
        if cm is not None and not cm.without(choice.index).counts.sum():
            rec["status"] = "failed"
            rec["error"] = (f"nothing to score: every ground-truth pixel is {choice.index} (not "
                            f"annotated); pass --ignore-index none if {choice.index} is a class")
    scored = total.without(choice.index)
    sc_gt, sc_pred = scored.values()
    problem = scoring_problems(gt_counts, choice.index) if per_image else None
    if problem:
        log.warning("%s", problem)
    only_pred = sorted(set(sc_pred) - set(sc_gt))
    only_gt = sorted(set(sc_gt) - set(sc_pred))
    if only_pred and only_gt:
        log.warning("the predictions use class value(s) %s that the ground truth never has, and "
                    "the ground truth has %s that no prediction has: are both coded the same way "
                    "(for example 0/1 against 0/255)?", only_pred[:10], only_gt[:10])
    ok = sum(r["status"] == "ok" for r in records)
    result = {**scored.scores(), "images_scored": ok, "images_total": len(gts),
              "ignore_index": choice.index, "ignore_note": choice.note or None,
              "images": records}
    if problem:
        result["warning"] = problem
    if args.out is not None:
        atomic_write_json(args.out, result)
    sys.stdout.write(json.dumps(_jsonable(result), indent=2) + "\n")
    log_summary(ok, len(gts), "scored", records, None)
    if not result["pixels"] and per_image:
        log.error("nothing was scored: no ground-truth pixel is left after the ignore index %s",
                  choice.index)
    return 0 if ok == len(gts) and result["pixels"] else 1
