"""Command line: ``napari-sseg expand | simulate | score | suggest``.

Exit codes: 0 when every image succeeded, 1 when at least one image failed or was skipped
(the batch still runs to the end and the summary names each one), 2 for bad usage or input that
stops the run before any image is processed (unreadable points file, empty folder, outputs that
exist without ``--overwrite``, outputs that would replace inputs, an output folder that cannot be
written, unavailable backend) and for a file that cannot be read or written and stops the run
(a full disk); 3 for an internal error (a bug: ``-v`` shows the traceback). Errors are one line
each (``napari-sseg: error: ...``), never a traceback.

Importing this module imports neither torch, Qt nor napari; heavy modules load when a command
needs them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module

from ._common import CliError

log = logging.getLogger("napari_sseg.cli")

__all__ = ["main", "build_parser", "CliError", "COMMANDS"]

#: Sub-command modules of this package, in the order ``--help`` lists them. Each defines
#: ``add_parser(sub, common)`` (which sets ``func``) and ``run(args) -> int``.
COMMANDS: list[str] = ["sample", "expand", "simulate", "score", "suggest", "train", "predict",
                       "export", "regions"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-sseg`` command."""
    from .. import __version__

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

    for name in COMMANDS:
        import_module(f"{__name__}.{name}").add_parser(sub, common)
    return parser


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
            if record.exc_info and record.levelno < logging.INFO:  # -v: the traceback
                import traceback

                msg += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
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
    from ..validate import InputError

    try:
        return int(args.func(args))
    except (CliError, InputError) as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; outputs already written are complete, the rest were not written")
        return 130
    except OSError as exc:  # a file that cannot be read or written (disk full, permissions)
        if exc.filename and str(exc.filename) not in str(exc.strerror):
            log.error("cannot access %s: %s; the run stopped", exc.filename,
                      exc.strerror or exc)
        else:
            log.error("%s; the run stopped", exc.strerror or exc)
        log.debug("traceback", exc_info=True)
        return 2
    except MemoryError:
        log.error("out of memory; try smaller images or fewer --workers")
        return 2
    except Exception as exc:  # never a traceback: one line, and the traceback with -v
        log.error("internal error (%s: %s); please report it with the output of -v",
                  type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        return 3
    finally:
        pkg_log.removeHandler(handler)
        pkg_log.setLevel(old_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
