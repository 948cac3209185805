"""``expand`` / ``simulate`` through the batch engine: local workers, an existing scheduler
started separately on loopback, a run killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_sseg.cli import main
from napari_sseg.core.sampling import sample_points
from napari_sseg.io import (
    read_image,
    read_label_image,
    write_label_image,
    write_points_csv,
    write_rgb,
)

STEMS = [f"tile1_image_part_00{i}" for i in range(1, 7)]
CROP = (slice(0, 150), slice(0, 180))


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory):
    """Six 150 x 180 crops of real aerial tiles, their masks and a CoralNet CSV (15 points)."""
    root = tmp_path_factory.mktemp("batchcli")
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    points = {}
    for i, stem in enumerate(STEMS):
        img = read_image(shared_data / "aerial_dubai" / "images" / f"{stem}.jpg")[CROP]
        gt = read_label_image(shared_data / "aerial_dubai" / "masks" / f"{stem}.png")[CROP]
        write_rgb(root / "images" / f"{stem}.png", img)
        write_label_image(root / "masks" / f"{stem}.png", gt)
        points[f"{stem}.png"] = sample_points(gt, 15, rng=i)
    write_points_csv(root / "points.csv", points)
    return root, points


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted serial ``expand`` of the six crops."""
    root, _ = data
    out = tmp_path_factory.mktemp("ref") / "out"
    assert main(["expand", str(root / "images"), "--points", str(root / "points.csv"),
                 "--out", str(out), "-q"]) == 0
    return out


def _pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _expand(data, out, *extra) -> int:
    root, _ = data
    return main(["expand", str(root / "images"), "--points", str(root / "points.csv"),
                 "--out", str(out), "-q", *map(str, extra)])


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A Dask scheduler and two single-threaded workers, each its own process, on loopback."""
    pytest.importorskip("distributed")
    from napari_sseg.batch import loopback_cluster

    with loopback_cluster(tmp_path_factory.mktemp("dask"), workers=2) as address:
        yield address


def test_expand_on_two_local_workers_and_on_a_scheduler_is_byte_identical(
        data, reference, scheduler, tmp_path):
    expected = _pngs(reference)
    assert len(expected) == 12
    assert _expand(data, tmp_path / "w2", "--workers", 2) == 0
    assert _pngs(tmp_path / "w2") == expected
    run = json.loads((tmp_path / "w2" / "run.json").read_text())
    assert run["engine"]["runner"] == "dask-local" and run["engine"]["workers"] == 2
    assert run["summary"] == {"ok": 6, "failed": 0, "skipped": 0}
    assert len({e["worker"] for e in run["images"]}) == 2  # both workers took images

    assert _expand(data, tmp_path / "sched", "--scheduler", scheduler) == 0
    assert _pngs(tmp_path / "sched") == expected
    run = json.loads((tmp_path / "sched" / "run.json").read_text())
    assert run["engine"]["runner"] == "dask-scheduler"
    assert run["engine"]["scheduler"] == scheduler and run["engine"]["cluster_workers"] == 2
    assert run["engine"]["outputs_written_by"] == "workers"
    assert all(e["worker"].split(":")[1] != str(os.getpid()) for e in run["images"])
    assert all(e["peak_rss_mb"] > 10 for e in run["images"])


def test_kill_9_mid_run_then_resume(data, reference, tmp_path, capsys):
    root, _ = data
    out = tmp_path / "out"
    code = "import sys; from napari_sseg.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "expand", str(root / "images"), "--points",
            str(root / "points.csv"), "--out", str(out), "-q"]
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + 120
    try:
        while not list(out.glob("*_overlay.png")):  # the first image is written
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    record = json.loads((out / "run.json").read_text())
    assert record["state"] == "running"  # what the killed run left
    finished = [e["key"] for e in record["images"] if e["status"] == "ok"]
    assert len(finished) < 6
    # a kill while the atomic writer writes leaves its temporary file: emulate one (the kill
    # above rarely lands inside a write of these small files)
    stray = out / f".{STEMS[5]}_overlay.png.sseg-x1y2z3w4.tmp"
    stray.write_bytes(b"\x89PNG half")
    stamps = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.glob("*.png")
              if p.name.replace("_overlay", "") in finished}

    assert _expand(data, out) == 2  # without --resume: refuses, touches nothing
    assert "refusing to overwrite" in capsys.readouterr().err
    assert stray.exists()

    assert _expand(data, out, "--resume") == 0
    assert not stray.exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected_names(), "run.json"])
    for p in out.glob("*.png"):  # images finished before the kill were left alone
        if p.name in stamps:
            assert (p.stat().st_mtime_ns, p.stat().st_ino) == stamps[p.name]
    assert _pngs(out) == _pngs(reference)  # same outputs as an uninterrupted run
    run = json.loads((out / "run.json").read_text())
    assert run["state"] == "finished" and run["resumed"]
    assert sorted(e["key"] for e in run["images"] if e.get("resumed")) == sorted(finished)
    assert stray.name in run["stray_files_removed"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_records_the_interruption_then_resume_finishes(data, reference, tmp_path,
                                                              workers):
    root, _ = data
    out = tmp_path / "out"
    code = "import sys; from napari_sseg.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "expand", str(root / "images"),
                             "--points", str(root / "points.csv"), "--out", str(out), "-q",
                             "--workers", workers], stderr=subprocess.PIPE, text=True,
                            # a suite started in the background (``&``) ignores SIGINT, and
                            # so would the child: give it the terminal's default, as Ctrl-C finds
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    try:
        while not list(out.glob("*_overlay.png")):
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    run = json.loads((out / "run.json").read_text())
    assert run["state"] == "interrupted"
    assert run["summary"]["ok"] < 6 and run["summary"].get("pending", 0) > 0
    assert _expand(data, out, "--resume", "--workers", workers) == 0
    assert _pngs(out) == _pngs(reference)
    assert json.loads((out / "run.json").read_text())["state"] == "finished"


def expected_names() -> list[str]:
    return [f"{s}.png" for s in STEMS] + [f"{s}_overlay.png" for s in STEMS]


def test_resume_redoes_only_the_image_whose_points_changed(data, reference, tmp_path):
    root, points = data
    out = tmp_path / "out"
    assert _expand(data, out) == 0
    stamps = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.glob("*.png")}
    changed = dict(points)
    name = f"{STEMS[2]}.png"
    changed[name] = points[name].subset(list(range(len(points[name]) - 2)))
    csv = write_points_csv(tmp_path / "changed.csv", changed)
    assert main(["expand", str(root / "images"), "--points", str(csv), "--out", str(out), "-q",
                 "--resume"]) == 0
    run = json.loads((out / "run.json").read_text())
    redone = [e["key"] for e in run["images"] if not e.get("resumed")]
    assert redone == [name]
    for p in out.glob("*.png"):
        same = (p.stat().st_mtime_ns, p.stat().st_ino) == stamps[p.name]
        assert same == (not p.name.startswith(STEMS[2])), p.name
    assert [e["points"] for e in run["images"] if e["key"] == name] == [13]


def _comparable(metrics: dict) -> dict:
    volatile = {"seconds", "cpu_seconds", "worker", "peak_rss_mb", "worker_peak_rss_mb",
                "written_by", "resumed"}
    return {**metrics, "images": [{k: v for k, v in e.items() if k not in volatile}
                                  for e in metrics["images"]]}


def test_simulate_on_workers_and_resumed_gives_the_same_metrics(data, tmp_path):
    root, _ = data
    args = ["simulate", "--images", str(root / "images"), "--ground-truth", str(root / "masks"),
            "--points-per-image", "8", "--seeds", "0", "1", "--save-masks", "-q"]
    assert main([*args, "--out", str(tmp_path / "s")]) == 0
    assert main([*args, "--out", str(tmp_path / "w"), "--workers", "2"]) == 0
    ms = json.loads((tmp_path / "s" / "metrics.json").read_text())
    mw = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert _comparable(ms) == _comparable(mw)
    assert ms["images_scored"] == 6 and 0.5 < ms["pixel_accuracy"] <= 1
    for seed in (0, 1):
        f = f"points_seed{seed}.csv"
        assert (tmp_path / "s" / f).read_bytes() == (tmp_path / "w" / f).read_bytes()
    assert _pngs(tmp_path / "s") == _pngs(tmp_path / "w")
    assert len(_pngs(tmp_path / "s")) == 12  # masks/seed<k>/<stem>.png

    # resuming a finished run recomputes nothing and gives the same numbers
    masks = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*.png")}
    assert main([*args, "--out", str(tmp_path / "s"), "--resume"]) == 0
    run = json.loads((tmp_path / "s" / "run.json").read_text())
    assert all(e.get("resumed") for e in run["images"])
    assert {p: p.stat().st_mtime_ns for p in masks} == masks
    assert _comparable(json.loads((tmp_path / "s" / "metrics.json").read_text())) == \
        _comparable(ms)


def test_batch_flag_errors(data, tmp_path, capsys):
    assert _expand(data, tmp_path / "a", "--workers", 0) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert _expand(data, tmp_path / "b", "--workers", 2, "--scheduler", "tcp://127.0.0.1:1") == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "run.json").write_text(json.dumps({"command": "simulate", "images": []}))
    assert _expand(data, tmp_path / "c", "--resume") == 2
    assert "records a 'simulate' run" in capsys.readouterr().err
