"""``napari-sseg sample``: copy the bundled sample (an aerial tile and its class points) to a folder."""

from __future__ import annotations

import logging
from pathlib import Path

from ._common import CliError, check_outputs, make_dir

log = logging.getLogger("napari_sseg.cli")

#: files of the bundled sample that are copied, in the package's sample_data folder
SAMPLE_FILES = ("dubai_tile2_part005.jpg", "dubai_points.csv", "classes.csv")


def add_parser(sub, common) -> None:
    """Add the ``sample`` sub-command to ``sub``."""
    p = sub.add_parser("sample", parents=[common],
                       help="copy the bundled sample image and its class points to a folder",
                       description="Copy the bundled CC0 aerial tile of Dubai "
                                   "(dubai_tile2_part005.jpg), its 30 class points "
                                   "(dubai_points.csv, CoralNet style) and its class table "
                                   "(classes.csv) into DIR, to try the other commands on.")
    p.add_argument("out", type=Path, metavar="DIR", help="folder to copy the sample into")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(func=run)


def run(args) -> int:
    """Copy the sample files; exit code 0."""
    from .._sample_data import SAMPLE_DIR
    from ..io.atomic import atomic_write_bytes

    targets = [args.out / name for name in SAMPLE_FILES]
    check_outputs(targets, args.overwrite)
    make_dir(args.out)
    for name, target in zip(SAMPLE_FILES, targets):
        try:
            atomic_write_bytes(target, (SAMPLE_DIR / name).read_bytes())
        except OSError as exc:
            raise CliError(f"{target}: cannot write: {exc}") from exc
    log.info("copied the sample into %s: %s", args.out, ", ".join(SAMPLE_FILES))
    return 0
