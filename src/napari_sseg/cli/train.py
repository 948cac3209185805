"""``napari-sseg train``: learn a survey model from the points (or masks) of many images."""

from __future__ import annotations

import logging
from pathlib import Path

from ._common import (
    DEVICES,
    CliError,
    close_bar,
    collect_images,
    match_points,
    points_for,
    progress_bar,
    read_points,
    show_status,
)

log = logging.getLogger("napari_sseg.cli")


def add_parser(sub, common) -> None:
    """Add the ``train`` sub-command to ``sub``."""
    p = sub.add_parser(
        "train", parents=[common], help="train a survey model from points or masks",
        description="Train one segmenter from the points of many images (the expansion's "
                    "pseudo-labels, or the point pixels alone) or from dense masks, and save it "
                    "to the folder MODEL (weights + card.json). Label new images with "
                    "'napari-sseg predict', or give it to 'napari-sseg expand --survey-model'.")
    p.add_argument("images", type=Path, metavar="IMAGES", help="an image file or a folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--points", type=Path, metavar="FILE",
                     help="points file (CoralNet CSV, napari CSV or JSON) of the images")
    src.add_argument("--masks", type=Path, metavar="DIR",
                     help="folder of dense class-index masks named like the images (255 ignored)")
    p.add_argument("--labels", choices=("expanded", "points"), default="expanded",
                   help="with --points: train on the expansion's pseudo-labels (default) or on "
                        "the point pixels alone")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="C",
                   help="with --labels expanded: ignore pixels whose expansion confidence is "
                        "below C (default: %(default)s, every pixel)")
    p.add_argument("--out", type=Path, required=True, metavar="MODEL", help="model folder")
    p.add_argument("--kind", choices=("forest", "unet"), default="forest",
                   help="forest (default; CPU, minutes) or unet (segmentation-models-pytorch; "
                        "for a GPU or hours)")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop cleanly after M minutes with the best model so far")
    p.add_argument("--device", choices=DEVICES, default="auto", help="device of the U-Net")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="unet: continue from MODEL's last checkpoint after an interruption")
    p.add_argument("--encoder-weights", type=Path, metavar="FILE",
                   help="unet: a local encoder state dict (e.g. resnet18 weights you have) to "
                        "start from; nothing is downloaded")
    p.add_argument("--classes", type=Path, metavar="FILE",
                   help="classes file (JSON or CSV of id,name[,colour]) for textual labels")
    p.add_argument("--clip", action="store_true",
                   help="clip points outside an image onto its border instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model")
    p.set_defaults(func=run)


def training_items(args, images: list[Path]):
    """(items, class names) from ``--points`` or ``--masks``."""
    from ..learn.dataset import TrainingItem

    items = []
    if args.masks is not None:
        from ..io import list_images

        if not args.masks.is_dir():
            raise CliError(f"{args.masks}: no such mask folder")
        masks = {m.stem: m for m in list_images(args.masks)}
        missing = [p.name for p in images if p.stem not in masks]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            log.warning("no mask in %s for %d image(s), left out: %s%s", args.masks,
                        len(missing), ", ".join(missing[:5]), more)
        items = [TrainingItem(p, mask=masks[p.stem]) for p in images if p.stem in masks]
        return items, {}
    pf = read_points(args)
    matched, unmatched = match_points(pf, images, args.points)
    if unmatched:
        log.warning("%s: %d Name(s) match no image in %s, their points are ignored: %s",
                    args.points, len(unmatched), args.images,
                    ", ".join(repr(n) for n in unmatched[:10]))
    without = []
    for path in images:
        keys = matched.get(path)
        if not keys:
            without.append(path.name)
            continue
        points, _ = points_for(pf, keys)
        items.append(TrainingItem(path, points=points, clip=args.clip,
                                  where=f"{args.points} ({path.name})"))
    if without:
        log.info("%d image(s) without points are left out of training: %s", len(without),
                 ", ".join(without[:10]))
    return items, dict(pf.classes.names)


def run(args) -> int:
    """``napari-sseg train``."""
    from ..learn.card import CARD_NAME, ModelError
    from ..learn.train import TrainOptions, iter_train

    images = collect_images(args.images)
    if (args.out / CARD_NAME).exists() and not (args.overwrite or args.resume):
        raise CliError(f"{args.out}: holds a model already; pass --overwrite to replace it "
                       f"(nothing was written)")
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"{args.out}: exists and is not a folder")
    if args.encoder_weights is not None and not args.encoder_weights.is_file():
        raise CliError(f"{args.encoder_weights}: no such encoder weights file")
    if args.kind == "forest" and (args.resume or args.encoder_weights):
        raise CliError("--resume and --encoder-weights are for --kind unet (a forest trains "
                       "in minutes)")
    items, names = training_items(args, images)
    opts = TrainOptions(kind=args.kind, labels="mask" if args.masks else args.labels,
                        min_confidence=args.min_confidence, max_minutes=args.max_minutes,
                        seed=args.seed, device=args.device, resume=args.resume,
                        encoder_weights=str(args.encoder_weights) if args.encoder_weights
                        else None)
    gen = iter_train(items, args.out, class_names=names, options=opts)
    bar = progress_bar(args, 0, "step", f"train {args.kind}")
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                card = stop.value
                break
            bar.total = event.total
            bar.n = event.step
            show_status(bar, event.message)
    except (ModelError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        close_bar(bar)
    val = card.get("validation", {}).get("miou")
    log.info("trained a %s on %d image(s) (%s labels) into %s; validation mIoU %s", args.kind,
             len(card["training"]["images"]), card["training"]["labels"], args.out,
             "n/a" if val is None else f"{100 * val:.1f}")
    return 0
