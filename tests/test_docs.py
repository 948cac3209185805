"""The documentation works: README and guide commands run, the CLI reference is current, the API
reference builds from the docstrings without warnings, the napari hub files are complete."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
CLI = Path(sys.executable).parent / "napari-sseg"
#: documents whose ```bash blocks are run, in order, each in a fresh folder
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]


def doc_steps(markdown: str) -> list[tuple[str, str]]:
    """What a document asks the reader to run, in order: ``("bash", command)`` for every
    ``napari-sseg`` command of a ```bash block (continuation lines joined) and ``("python",
    code)`` for every ```python block.

    Other lines of bash blocks (``pip install``, ``bash scripts/...``) are not run here: the
    set-up scripts are what CI itself runs. Generic synopses go in ```text blocks.
    """
    steps = []
    for lang, block in re.findall(r"^```(bash|python)\n(.*?)^```", markdown, flags=re.S | re.M):
        if lang == "python":
            steps.append(("python", block))
            continue
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("napari-sseg "):
                steps.append(("bash", line))
    return steps


def _outputs(argv: list[str]) -> list[str]:
    """What a command says it writes: the value of --out, or the folder of ``sample``."""
    outs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--out"]
    if argv[1:2] == ["sample"]:
        outs.append(argv[2])
    return outs


def test_every_document_has_runnable_steps():
    for doc in DOCUMENTS:
        assert doc_steps(doc.read_text(encoding="utf-8")), f"{doc.name} shows nothing to run"


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_documented_steps_run_and_write_what_they_say(doc, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    for kind, step in doc_steps(doc.read_text(encoding="utf-8")):
        if kind == "python":
            proc = subprocess.run([sys.executable, "-c", step], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"{doc.name}: python block failed:\n{step}\n" \
                                         f"{proc.stderr[-3000:]}"
            continue
        argv = shlex.split(step)
        proc = subprocess.run([str(CLI), *argv[1:]], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, f"{doc.name}: `{step}` exited {proc.returncode}:\n" \
                                     f"{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr
        for out in _outputs(argv):
            path = tmp_path / out
            assert path.exists(), f"{doc.name}: `{step}` did not write {out}"
            if path.is_dir():
                assert any(path.iterdir()), f"{doc.name}: `{step}` left {out} empty"


def test_cli_reference_is_current():
    proc = subprocess.run([sys.executable, str(SCRIPTS / "gen_cli_reference.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_api_reference_builds_without_warnings(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPTS / "build_api_docs.py"), str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (tmp_path / "napari_sseg" / "core" / "expand.html").is_file()


def test_api_checker_catches_a_broken_docstring(tmp_path, monkeypatch):
    sys.path.insert(0, str(SCRIPTS))
    try:
        import build_api_docs
    finally:
        sys.path.remove(str(SCRIPTS))
    module = tmp_path / "broken_doc_module.py"
    module.write_text(
        'def f(a):\n    """Do.\n\n    Parameters\n    ----------\n    b : int\n        Not a '
        'parameter.\n\n    Retruns\n    -------\n    int\n    """\n', encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = build_api_docs.check_docstrings(["broken_doc_module"])
    assert any("Unknown section Retruns" in p for p in problems), problems
    assert any("'b'" in p for p in problems), problems


def test_napari_hub_files():
    hub = ROOT / ".napari-hub"
    description = (hub / "DESCRIPTION.md").read_text(encoding="utf-8")
    config = (hub / "config.yml").read_text(encoding="utf-8")
    assert "napari-sseg" in description and "pip install \"napari-sseg[napari]\"" in description
    for key in ("summary:", "labels:", "project_urls:"):
        assert key in config, key
