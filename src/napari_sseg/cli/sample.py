"""``napari-sseg sample``: copy the bundled sample (an aerial tile and its class points) to a folder.

With ``--stack`` it also writes a small stack made from the same tile, to try the volume
workflow on: ``stack.tif`` holds 8 grey planes, each the tile seen 3 rows further down (a slow
pan, like a time series), and ``stack_points.csv`` the sample's points placed on planes 0 and 4
as a napari points CSV with three axes (``axis-0`` = plane).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ._common import CliError, check_outputs, make_dir

log = logging.getLogger("napari_sseg.cli")

#: files of the bundled sample that are copied, in the package's sample_data folder
SAMPLE_FILES = ("dubai_tile2_part005.jpg", "dubai_points.csv", "classes.csv")
#: files written by ``--stack``
STACK_FILES = ("stack.tif", "stack_points.csv")
STACK_PLANES = 8
STACK_STEP = 3  # rows the view moves down from one plane to the next


def add_parser(sub, common) -> None:
    """Add the ``sample`` sub-command to ``sub``."""
    p = sub.add_parser("sample", parents=[common],
                       help="copy the bundled sample image and its class points to a folder",
                       description="Copy the bundled CC0 aerial tile of Dubai "
                                   "(dubai_tile2_part005.jpg), its 30 class points "
                                   "(dubai_points.csv, CoralNet style) and its class table "
                                   "(classes.csv) into DIR, to try the other commands on.")
    p.add_argument("out", type=Path, metavar="DIR", help="folder to copy the sample into")
    p.add_argument("--stack", action="store_true",
                   help=f"also write {STACK_FILES[0]} ({STACK_PLANES} grey planes panning over "
                        f"the tile) and {STACK_FILES[1]} (its points on planes 0 and 4, napari "
                        f"CSV with three axes), to try volumes on")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(func=run)


def run(args) -> int:
    """Copy the sample files; exit code 0."""
    from .._sample_data import SAMPLE_DIR
    from ..io.atomic import atomic_write_bytes

    names = SAMPLE_FILES + (STACK_FILES if args.stack else ())
    check_outputs([args.out / name for name in names], args.overwrite)
    make_dir(args.out)
    try:
        for name in SAMPLE_FILES:
            atomic_write_bytes(args.out / name, (SAMPLE_DIR / name).read_bytes())
        if args.stack:
            _write_stack(args.out)
    except OSError as exc:
        raise CliError(f"{args.out}: cannot write the sample: {exc}") from exc
    log.info("copied the sample into %s: %s", args.out, ", ".join(names))
    return 0


def _write_stack(out: Path) -> None:
    """``stack.tif`` and ``stack_points.csv`` made from the bundled tile and its points."""
    import numpy as np

    from .._sample_data import SAMPLE_IMAGE, SAMPLE_POINTS
    from ..core.points import PointSet
    from ..io import read_image, read_points_file
    from ..io.images import write_label_stack
    from ..io.points_files import write_napari_points_csv

    grey = read_image(SAMPLE_IMAGE).astype(np.float32).mean(axis=2).round().astype(np.uint8)
    rows = grey.shape[0] - STACK_STEP * (STACK_PLANES - 1)
    stack = np.stack([grey[STACK_STEP * k:STACK_STEP * k + rows] for k in range(STACK_PLANES)])
    write_label_stack(out / STACK_FILES[0], stack)  # grey pages: any uint8 stack is written alike
    points = next(iter(read_points_file(SAMPLE_POINTS).points.values()))
    planes = np.where(np.arange(len(points)) % 2 == 0, 0, 4)  # every other point on plane 4
    coords = points.coords - np.c_[STACK_STEP * planes, np.zeros_like(planes)]
    keep = (coords[:, 0] >= 0) & (coords[:, 0] < rows)
    write_napari_points_csv(out / STACK_FILES[1], PointSet(
        coords=coords[keep], labels=points.labels[keep], planes=planes[keep]))
