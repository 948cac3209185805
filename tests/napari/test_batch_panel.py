"""The *Run on folder* section: the batch engine in a worker, progress, Cancel, resume (Xvfb)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sseg.cli import main
from napari_sseg.core.sampling import sample_points
from napari_sseg.io import read_image, read_label_image, write_points_csv, write_rgb

pytestmark = pytest.mark.gui
WAIT_MS = 180_000
STEMS = [f"tile1_image_part_00{i}" for i in range(1, 5)]


@pytest.fixture
def folder(shared_data, tmp_path):
    DATA = shared_data
    (tmp_path / "images").mkdir()
    points = {}
    for i, stem in enumerate(STEMS):
        img = read_image(DATA / "aerial_dubai" / "images" / f"{stem}.jpg")[:120, :150]
        gt = read_label_image(DATA / "aerial_dubai" / "masks" / f"{stem}.png")[:120, :150]
        write_rgb(tmp_path / "images" / f"{stem}.png", img)
        points[f"{stem}.png"] = sample_points(gt, 12, rng=i)
    write_points_csv(tmp_path / "points.csv", points)
    return tmp_path


@pytest.fixture
def panel(make_napari_viewer_proxy, qtbot):
    from napari_sseg._widget import SSegWidget

    viewer = make_napari_viewer_proxy()
    widget = SSegWidget(viewer)
    qtbot.addWidget(widget)
    return widget, widget.panels["Run on folder"]


def _fill(panel, folder, out):
    panel.images_edit.setText(str(folder / "images"))
    panel.points_edit.setText(str(folder / "points.csv"))
    panel.out_edit.setText(str(out))


def test_run_on_folder_writes_what_the_command_writes_then_resumes(panel, folder, qtbot):
    widget, panel = panel
    out = folder / "out"
    _fill(panel, folder, out)
    steps = []
    panel.run()
    assert widget.is_busy()
    widget._worker.yielded.connect(lambda v: steps.append(v))
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    result = panel.last_result
    assert result["code"] == 0 and result["record"]["summary"]["ok"] == 4
    fractions = [v[0] for v in steps if v is not None]
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert "4 ok, 0 failed" in widget.status.text()
    # the same files as the command line with the same settings
    ref = folder / "ref"
    assert main(["expand", str(folder / "images"), "--points", str(folder / "points.csv"),
                 "--out", str(ref), "--backend", "superpixel", "-q"]) == 0
    for stem in STEMS:
        for name in (f"{stem}.png", f"{stem}_overlay.png"):
            assert (out / name).read_bytes() == (ref / name).read_bytes()
    # run again without Resume: refused, nothing touched; with Resume: everything kept
    panel.run()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    assert "refusing to overwrite" in panel.last_result["error"]
    assert "refusing to overwrite" in widget.status.text()
    panel.resume_check.setChecked(True)
    panel.run()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    rec = json.loads((out / "run.json").read_text())
    assert all(e.get("resumed") for e in rec["images"])


def test_cancel_stops_between_images_and_records_it(panel, folder, qtbot):
    widget, panel = panel
    out = folder / "out"
    _fill(panel, folder, out)
    panel.run()
    worker = widget._worker
    first = []
    worker.yielded.connect(lambda v: first.append(v) if v and v[0] > 0 else None)
    qtbot.waitUntil(lambda: bool(first), timeout=WAIT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    # the engine's thread ends at the next image boundary and records the cancellation
    qtbot.waitUntil(lambda: json.loads((out / "run.json").read_text())["state"] == "cancelled",
                    timeout=WAIT_MS)
    rec = json.loads((out / "run.json").read_text())
    status = [e["status"] for e in rec["images"]]
    assert "cancelled" in status and status.count("ok") < 4
    assert np.all([(out / f"{e['key'][:-4]}.png").exists() == (e["status"] == "ok")
                   for e in rec["images"]])
