"""Write the command-line reference, docs/cli.md, from the argument parser itself.

Usage: ``python scripts/gen_cli_reference.py [--check]``. With ``--check`` nothing is written and the
exit code is 1 when docs/cli.md differs from what the parser says (the test suite runs this, so
the reference cannot drift from the code).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def render() -> str:
    """The reference as markdown: the top-level help, then each command's full help."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width: fix it
    from napari_sseg.cli import build_parser

    parser = build_parser()
    parser.prog = "napari-sseg"
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    parts = [
        "# Command-line reference\n",
        "Generated from the argument parser by `scripts/gen_cli_reference.py`; do not edit by hand.",
        "Exit codes: 0 when every image succeeded, 1 when at least one failed (the run goes on and",
        "`run.json` names each failure), 2 for bad usage or input that stops the run before any",
        "image is processed, 130 when interrupted.\n",
        "```text", parser.format_help().rstrip(), "```\n",
    ]
    for name, cmd in sub.choices.items():
        parts += [f"## `napari-sseg {name}`\n", "```text", cmd.format_help().rstrip(), "```\n"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            sys.stderr.write(f"{OUT} is out of date: run python scripts/gen_cli_reference.py\n")
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
