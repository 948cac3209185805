"""Longer property-based run of the file readers and of ``napari-sseg expand`` on fuzzed points.

1. The properties of ``tests/io/test_properties.py`` (points CSV / JSON, classes files, label
   images, the label writer) with ``--examples`` examples each instead of the suite's 40.
2. ``napari-sseg expand`` (in this process) on a tiny image with fuzzed CoralNet / napari CSV
   and JSON points files: every run must end with exit code 0, 1 or 2, print no traceback, and
   leave no temporary file in the output folder.

Writes ``benchmarks/results/fuzz_io.md``. Usage::

    nice -n 5 .venv/bin/python benchmarks/fuzz_io.py --examples 500 --cli-examples 200
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_properties(examples: int) -> list[tuple[str, str, float]]:
    """The property tests in one pytest run; (name, outcome, seconds) from its JUnit XML."""
    import xml.etree.ElementTree as ET

    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-W", "ignore",
             f"--junitxml={xml}", "tests/io/test_properties.py"],
            cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "SSEG_FUZZ_EXAMPLES": str(examples)})
        rows = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            bad = case.find("failure") or case.find("error")
            outcome = "passed" if bad is None else "FAILED: " + (bad.get("message") or "")[:300]
            if case.find("skipped") is not None:
                outcome = "skipped"
            rows.append((case.get("name"), outcome.replace("|", "/").replace("\n", " "),
                         float(case.get("time", 0))))
            print(f"{rows[-1][0]}: {outcome} ({rows[-1][2]:.0f} s)", flush=True)
    return rows


def _valid_csv():
    """CoralNet CSVs for the tiny images, then one random edit (a character inserted, deleted
    or replaced), so that most runs get past the reader into the checks and the expansion."""
    from hypothesis import strategies as st

    row = st.tuples(st.sampled_from(["a.png", "b.png", "A.PNG", "c.png"]), st.integers(-2, 30),
                    st.integers(-2, 40), st.one_of(st.integers(0, 3),
                                                   st.sampled_from(["coral", "sand", "1e3"])))

    @st.composite
    def text(draw):
        rows = draw(st.lists(row, min_size=1, max_size=12))
        t = "Name,Row,Column,Label\n" + "".join(f"{n},{r},{c},{lab}\n" for n, r, c, lab in rows)
        if draw(st.booleans()):
            i = draw(st.integers(0, len(t)))
            ch = draw(st.sampled_from(['"', ",", "\n", ";", "x", "9", " ", "\x00", "é"]))
            t = draw(st.sampled_from([t[:i] + ch + t[i:], t[:i] + t[i + 1:],
                                      t[:i] + ch + t[i + 1:]]))
        return t

    return text()


def run_cli(examples: int) -> dict:
    """``expand`` on fuzzed points files; counts of exit codes and of problems found."""
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from napari_sseg.cli import main
    from napari_sseg.io import write_rgb

    spec = importlib.util.spec_from_file_location(
        "test_properties", ROOT / "tests" / "io" / "test_properties.py")
    props = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(props)

    work = Path(tempfile.mkdtemp(prefix="sseg-fuzz-"))
    (work / "imgs").mkdir()
    img = np.zeros((24, 32, 3), np.uint8)
    img[:, 16:] = 200
    for name in ("a.png", "b.png"):
        write_rgb(work / "imgs" / name, img)
    stats = {"runs": 0, "codes": {}, "tracebacks": [], "other_exceptions": [], "temp_files": []}

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(text=st.one_of(_valid_csv(), props.csv_texts()), doc=props.json_docs(),
           as_json=st.integers(0, 4).map(lambda i: i == 0))
    def one(text, doc, as_json):
        pts = work / ("p.json" if as_json else "p.csv")
        for p in (work / "p.json", work / "p.csv"):
            p.unlink(missing_ok=True)
        if as_json:
            pts.write_text(json.dumps(doc), encoding="utf-8")
        else:
            pts.write_text(text, encoding="utf-8", newline="")
        out = work / "out"
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                code = main(["expand", str(work / "imgs"), "--points", str(pts), "--out",
                             str(out), "--overwrite", "-q"])
        except BaseException as exc:  # noqa: BLE001 - anything escaping main() is a finding
            stats["other_exceptions"].append(f"{type(exc).__name__}: {exc}"[:200])
            return
        stats["runs"] += 1
        stats["codes"][code] = stats["codes"].get(code, 0) + 1
        if "Traceback" in err.getvalue() or code not in (0, 1, 2):
            stats["tracebacks"].append(err.getvalue()[-300:])
        if out.exists():
            stats["temp_files"] += [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

    one()
    return stats


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=500, help="examples per property")
    ap.add_argument("--cli-examples", type=int, default=200, help="fuzzed expand runs")
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = run_properties(a.examples)
    t1 = time.perf_counter()
    cli = run_cli(a.cli_examples)
    t2 = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Fuzzing the readers and `expand` (benchmarks/fuzz_io.py)",
        "",
        f"Command: `nice -n 5 .venv/bin/python benchmarks/fuzz_io.py --examples {a.examples} "
        f"--cli-examples {a.cli_examples}` ({time.strftime('%Y-%m-%d')}).",
        "",
        f"## Properties ({a.examples} examples each, {t1 - t0:.0f} s)",
        "",
        "| property | outcome | seconds |",
        "|---|---|---:|",
        *[f"| `{n}` | {o} | {s:.0f} |" for n, o, s in rows],
        "",
        f"## `napari-sseg expand` on fuzzed points files ({t2 - t1:.0f} s)",
        "",
        f"- runs: {cli['runs']}; exit codes: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(cli["codes"].items())),
        f"- tracebacks or other exit codes: {len(cli['tracebacks'])}",
        f"- exceptions escaping `main()`: {len(cli['other_exceptions'])}",
        f"- temporary files left in the output folder: {len(cli['temp_files'])}",
    ]
    for what in ("tracebacks", "other_exceptions"):
        for x in cli[what][:5]:
            lines.append(f"  - {what}: `{x}`")
    (RESULTS / "fuzz_io.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main_()
