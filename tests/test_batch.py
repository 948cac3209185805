"""The batch engine on real aerial crops: record, resume, failures, cancel, local Dask workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from napari_sseg.batch import BatchError, Task, file_digest, load_record, run_batch, task_digest
from napari_sseg.core.sampling import sample_points
from napari_sseg.io import read_image, read_label_image, write_label_image, write_rgb
from napari_sseg.tasks import points_to_inputs

STEMS = ("tile1_image_part_001", "tile1_image_part_002", "tile1_image_part_003",
         "tile1_image_part_004")
CROP = (slice(0, 180), slice(0, 200))


@pytest.fixture(scope="module")
def crops(shared_data, tmp_path_factory):
    """Four 180 x 200 crops of real aerial tiles (PNG) with 20 oracle points each."""
    root = tmp_path_factory.mktemp("crops")
    out = {}
    for i, stem in enumerate(STEMS):
        img = read_image(shared_data / "aerial_dubai" / "images" / f"{stem}.jpg")[CROP]
        gt = read_label_image(shared_data / "aerial_dubai" / "masks" / f"{stem}.png")[CROP]
        write_rgb(root / f"{stem}.png", img)
        write_label_image(root / f"{stem}_gt.png", gt)
        out[stem] = (root / f"{stem}.png", sample_points(gt, 20, rng=i))
    return out


def _tasks(crops, **overrides) -> list[Task]:
    tasks = []
    for stem, (path, pts) in crops.items():
        inputs = {"image": str(path), "points": points_to_inputs(pts),
                  "labels_out": f"{stem}.png", "overlay_out": f"{stem}_overlay.png",
                  "max_id": 5, "classes": [], "clip": False}
        inputs.update(overrides.get(stem, {}))
        tasks.append(Task(path.name, "napari_sseg.tasks:expand_image", inputs,
                          outputs=(f"{stem}.png", f"{stem}_overlay.png"), files=(str(path),),
                          info={"image": path.name, "points": len(pts)}))
    return tasks


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.glob("*.png")}


# ---------------------------------------------------------------------- task functions for tests


def kill_own_worker(inputs: dict, out_dir: Path) -> dict:
    """A task whose process dies as in a segfault or the kernel's OOM killer."""
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def grow_memory(inputs: dict, out_dir: Path) -> dict:
    """A task that keeps allocating memory (real pages) until something stops it."""
    held = []
    for _ in range(inputs["steps"]):
        held.append(np.ones(inputs["chunk_mb"] * 131072))  # float64: 8 bytes each
        threading.Event().wait(0.02)
    return {"held_mb": len(held) * inputs["chunk_mb"]}


# ------------------------------------------------------------------------------------ serial


def test_serial_record_outputs_and_resume(crops, tmp_path):
    out = tmp_path / "out"
    seen = []
    rec = run_batch(_tasks(crops), out, record={"command": "test", "settings": {"a": 1}},
                    progress=lambda d, t, e: seen.append((d, t, e["key"], e["status"])))
    assert [s[:2] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert rec["state"] == "finished" and rec["summary"] == {"ok": 4, "failed": 0, "skipped": 0}
    assert rec["engine"]["runner"] == "serial" and rec["command"] == "test"
    on_disk = load_record(out / "run.json")
    assert on_disk["images"] == json.loads(json.dumps(rec["images"]))
    for e, t in zip(rec["images"], _tasks(crops)):
        assert e["key"] == t.key and e["status"] == "ok" and e["digest"] == task_digest(t)
        assert e["points"] == 20 and e["seconds"] > 0 and e["peak_rss_mb"] > 10
        assert e["method"] and e["classes"]
        for o in e["outputs"]:  # size and hash measured at write time match the files
            assert (o["size"], o["sha256"]) == file_digest(out / o["path"])
    assert len(rec["workers"]) == 1 and next(iter(rec["workers"].values()))["tasks"] == 4

    # resume after an interruption: a stray temp file of the atomic writer, one output lost,
    # one output damaged, one task's points changed -> only those redone, the rest untouched
    first = _pngs(out)
    stamps = _stamps(out)
    stray = out / f".{STEMS[0]}.png.sseg-abcd1234.tmp"
    stray.write_bytes(b"half a png")
    old_style = out / f".{STEMS[0]}_overlay.png.k3j_2h1x.tmp"  # before the sseg- infix
    old_style.write_bytes(b"half")
    (out / f"{STEMS[1]}_overlay.png").unlink()
    damaged = out / f"{STEMS[2]}.png"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\0")
    _, pts3 = crops[STEMS[3]]
    moved = pts3.subset(np.arange(len(pts3) - 1))
    seen.clear()
    rec2 = run_batch(_tasks(crops, **{STEMS[3]: {"points": points_to_inputs(moved)}}), out,
                     record={"command": "test"}, resume=True,
                     progress=lambda d, t, e: seen.append(e["key"]))
    assert sorted(seen) == sorted(f"{s}.png" for s in STEMS)  # progress counts every task
    assert not stray.exists() and not old_style.exists()
    assert sorted(rec2["stray_files_removed"]) == sorted([stray.name, old_style.name])
    resumed = {e["key"]: bool(e.get("resumed")) for e in rec2["images"]}
    assert resumed == {f"{STEMS[0]}.png": True, f"{STEMS[1]}.png": False,
                       f"{STEMS[2]}.png": False, f"{STEMS[3]}.png": False}
    now = _stamps(out)
    assert now[f"{STEMS[0]}.png"] == stamps[f"{STEMS[0]}.png"]  # untouched: same inode, mtime
    assert now[f"{STEMS[0]}_overlay.png"] == stamps[f"{STEMS[0]}_overlay.png"]
    again = _pngs(out)
    for stem in STEMS[:3]:  # redone outputs are byte-identical to the first run's
        assert again[f"{stem}.png"] == first[f"{stem}.png"]
        assert again[f"{stem}_overlay.png"] == first[f"{stem}_overlay.png"]
    assert rec2["summary"]["ok"] == 4


def test_serial_failure_skip_and_cancel(crops, tmp_path):
    tasks = _tasks(crops, **{STEMS[1]: {"image": str(tmp_path / "gone.png")}})
    tasks[2] = Task(tasks[2].key, tasks[2].func, info={"image": tasks[2].key},
                    skip="no points in p.csv; nothing written")
    rec = run_batch(tasks, tmp_path / "out")
    status = [e["status"] for e in rec["images"]]
    assert status == ["ok", "failed", "skipped", "ok"]
    err = rec["images"][1]["error"]
    assert "gone.png" in err and "Traceback" in rec["images"][1]["traceback"]
    assert rec["images"][2]["warning"].startswith("no points")
    assert rec["summary"] == {"ok": 2, "failed": 1, "skipped": 1}
    assert not (tmp_path / "out" / f"{STEMS[1]}.png").exists()

    stop = threading.Event()
    rec = run_batch(_tasks(crops), tmp_path / "c", progress=lambda d, t, e: stop.set(),
                    cancel=stop)
    assert [e["status"] for e in rec["images"]] == ["ok"] + ["cancelled"] * 3
    assert rec["state"] == "cancelled"
    assert load_record(tmp_path / "c" / "run.json")["state"] == "cancelled"
    with pytest.raises(BatchError, match="duplicate task keys"):
        run_batch(_tasks(crops) * 2, tmp_path / "d")


def test_serial_run_imports_no_dask(crops, tmp_path):
    path, pts = crops[STEMS[0]]
    code = f"""
import sys
from napari_sseg.batch import Task, run_batch
t = Task("a", "napari_sseg.tasks:expand_image",
         {{"image": {str(path)!r}, "points": {points_to_inputs(pts)!r}, "labels_out": "a.png",
          "overlay_out": "b.png", "max_id": 5, "classes": [], "clip": False}}, outputs=("a.png",))
rec = run_batch([t], {str(tmp_path / 'o')!r})
assert rec["summary"]["ok"] == 1, rec
bad = [m for m in ("dask", "distributed", "torch", "napari") if m in sys.modules]
assert not bad, bad
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_record_written_as_each_task_ends(crops, tmp_path):
    out = tmp_path / "out"
    states = []

    def progress(done, total, entry):  # what a crash right now would leave on disk
        rec = load_record(out / "run.json")
        states.append([e["status"] for e in rec["images"]])

    run_batch(_tasks(crops), out, progress=progress)
    assert states[0] == ["ok", "pending", "pending", "pending"]
    assert states[2] == ["ok", "ok", "ok", "pending"]


# -------------------------------------------------------------------------------- local Dask


def test_local_cluster_outputs_identical_and_dead_worker_recorded(crops, tmp_path):
    serial = tmp_path / "serial"
    run_batch(_tasks(crops), serial)
    expected = _pngs(serial)

    out = tmp_path / "dask"
    tasks = _tasks(crops)
    tasks.insert(1, Task("crash", f"{__name__}:kill_own_worker", {}, info={"image": "crash"}))
    seen = []
    rec = run_batch(tasks, out, workers=2, progress=lambda d, t, e: seen.append(d))
    assert seen == list(range(1, 6))
    assert _pngs(out) == expected  # byte for byte
    by_key = {e["key"]: e for e in rec["images"]}
    assert by_key["crash"]["status"] == "failed"
    assert "worker process died" in by_key["crash"]["error"]
    assert all(by_key[f"{s}.png"]["status"] == "ok" for s in STEMS)  # the batch went on
    eng = rec["engine"]
    assert eng["runner"] == "dask-local" and eng["workers"] == 2
    assert eng["outputs_written_by"] == "workers"
    assert not list(out.glob(".sseg-run-*"))  # the shared-folder marker is gone
    workers = {by_key[f"{s}.png"]["worker"] for s in STEMS}
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)  # ran in other processes
    assert all(v["peak_rss_mb"] > 10 for v in rec["workers"].values())

    # workers that do not see the output folder return the files; the client writes them
    out2 = tmp_path / "returned"
    rec2 = run_batch(_tasks(crops), out2, workers=2, outputs_via="client")
    assert rec2["engine"]["outputs_written_by"] == "client"
    assert _pngs(out2) == expected
    assert all(e["written_by"] == "client" for e in rec2["images"])


def test_local_cluster_task_over_memory_limit_fails_alone(crops, tmp_path):
    tasks = _tasks(crops)[:2]
    tasks.insert(1, Task("greedy", f"{__name__}:grow_memory", {"steps": 150, "chunk_mb": 20}))
    rec = run_batch(tasks, tmp_path / "out", workers=2, memory_limit="600MB")
    by_key = {e["key"]: e for e in rec["images"]}
    assert by_key["greedy"]["status"] == "failed"
    assert "worker process died" in by_key["greedy"]["error"]
    assert [by_key[t.key]["status"] for t in tasks if t.key != "greedy"] == ["ok", "ok"]


def test_no_scheduler_at_the_address_is_a_clear_error_and_writes_no_record(crops, tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(BatchError, match="no Dask scheduler answered at tcp://127.0.0.1:9"):
        run_batch(_tasks(crops), tmp_path / "o", scheduler="tcp://127.0.0.1:9", timeout=2)
    assert not (tmp_path / "o" / "run.json").exists()
