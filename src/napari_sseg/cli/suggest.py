"""``napari-sseg suggest``: propose the next points to label."""

from __future__ import annotations

import logging
from pathlib import Path

from ._common import (
    CliError,
    add_backend_args,
    backend_from_args,
    bounded_points,
    check_outputs,
    make_dir,
    match_points,
    points_for,
    read_points,
)

log = logging.getLogger("napari_sseg.cli")


def add_parser(sub, common) -> None:
    """Add the ``suggest`` sub-command to ``sub``."""
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
    add_backend_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """``napari-sseg suggest``."""
    from ..io import read_image, write_unlabelled_points
    from ..validate import (
        InputError,
        check_not_inputs,
        check_points,
        check_same_pixel,
        check_seeds,
        check_writable,
    )

    if args.n < 1:
        raise CliError(f"-n must be at least 1, got {args.n}")
    check_seeds([args.seed], "--seed")
    if not args.image.is_file():
        raise CliError(f"{args.image}: no such image file" if not args.image.exists() else
                       f"{args.image}: a folder; suggest takes one image file")
    inputs = [args.image] + [p for p in (args.points, args.classes) if p is not None]
    check_not_inputs([args.out], inputs)
    check_writable(args.out.parent if str(args.out.parent) else Path("."))
    check_outputs([args.out], args.overwrite)
    try:
        from ..core.suggest import suggest_points
    except ImportError as exc:
        raise CliError(f"suggestions are not available: {exc}") from exc
    from ..core.points import PointSet

    points, sources = PointSet.empty(), []
    if args.points is not None:
        pf = read_points(args)
        try:
            check_points(pf, args.points)
        except InputError as exc:
            if sum(len(ps) for ps in pf.points.values()):
                raise  # not the "no points" case
            log.warning("%s; suggesting a first batch", exc)
        matched, _ = match_points(pf, [args.image], args.points)
        if not matched and not sum(len(ps) for ps in pf.points.values()):
            pass  # said above
        elif args.image in matched:
            points, sources = points_for(pf, matched[args.image])
            check_same_pixel(points, sources, f"{args.points} ({args.image.name})")
        else:
            log.warning("%s: no points for %s; suggesting a first batch", args.points,
                        args.image.name)
    proposer, backend_desc = backend_from_args(args)

    from ..core.pipeline import iter_expand_image
    from ..core.progress import run_generator

    try:
        image = read_image(args.image)
        points = bounded_points(points, sources, image.shape[:2], args.clip, str(args.points))
        expansion = None
        if len(points):
            expansion = run_generator(iter_expand_image(image, points, proposer=proposer))
        free = image.shape[0] * image.shape[1] - len(points)
        coords = suggest_points(image, points, expansion, min(args.n, max(free, 0)),
                                seed=args.seed)
    except ValueError as exc:
        raise CliError(f"{args.image}: {exc}") from exc
    if len(coords) < args.n:
        log.warning("asked for %d point(s) but only %d could be suggested: %s has %d x %d = %d "
                    "pixels, %d of them already labelled, and a suggestion never lands on a "
                    "labelled pixel or on another suggestion", args.n, len(coords),
                    args.image.name, image.shape[0], image.shape[1],
                    image.shape[0] * image.shape[1], len(points))
    if args.out.parent and not args.out.parent.exists():
        make_dir(args.out.parent)
    write_unlabelled_points(args.out, args.image.name, coords)
    log.info("wrote %d suggested point(s) for %s to %s (backend: %s)", len(coords),
             args.image.name, args.out, backend_desc)
    return 0
