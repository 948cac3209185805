"""The npe2 manifest validates, and light modules import no torch, Qt or napari."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_npe2_validate():
    pytest.importorskip("npe2")
    proc = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-sseg"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_manifest_contributions():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManifest.from_distribution("napari-sseg")
    contrib = pm.contributions
    assert [w.display_name for w in contrib.widgets] == ["SSeg"]
    mask_patterns = [p for r in contrib.readers for p in r.filename_patterns if "mask" in p]
    assert {"*mask*.png", "*mask*.tif", "*mask*.tiff"} <= set(mask_patterns)
    assert {tuple(w.layer_types) for w in contrib.writers} == {("points+",), ("labels",)}
    assert [s.key for s in contrib.sample_data] == ["dubai"]
    for cmd in contrib.commands:  # every python_name resolves
        assert callable(_resolve(cmd.python_name))


def _resolve(python_name: str):
    import importlib

    mod, attr = python_name.split(":")
    return getattr(importlib.import_module(mod), attr)


HEAVY = ("torch", "torchvision", "sam2", "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6",
         "magicgui", "vispy")


def test_light_imports_pull_in_no_torch_qt_or_napari():
    code = (
        "import json, sys\n"
        "import napari_sseg, napari_sseg._reader, napari_sseg._writer, napari_sseg._sample_data\n"
        "import napari_sseg.io, napari_sseg.cli, napari_sseg.backends\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_reading_and_writing_pull_in_no_torch_qt_or_napari(tmp_path):
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from napari_sseg._reader import get_reader\n"
        "from napari_sseg._sample_data import SAMPLE_POINTS, make_sample_data\n"
        "from napari_sseg._writer import write_points, write_labels\n"
        "layers = get_reader(str(SAMPLE_POINTS))(str(SAMPLE_POINTS))\n"
        f"write_points({str(tmp_path / 'p.csv')!r}, layers)\n"
        f"write_labels({str(tmp_path / 'l.png')!r}, np.zeros((4, 4), np.uint8), {{}})\n"
        "make_sample_data()\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
