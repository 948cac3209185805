"""Volumes: points on every K-th plane of an EM stack label every plane.

Quality (``em_isbi2012``, 20 consecutive 512 x 512 slices stacked as a volume, spacing
(12.5, 1, 1): ISBI 2012 is 4 x 4 x 50 nm). Two splits of 10 slices each: ``dev`` (slices
0-9, used to choose ``VolumeOptions.plane_weight``) and ``report`` (slices 10-19, reported).
For every seed, 25 random points (from the ground truth's oracle) are drawn on each labelled
plane (planes 0, K, 2K, ... of the split). Methods, one confusion matrix over planes and seeds:

* ``3D``: :func:`~napari_sseg.core.volume.expand_volume` with all the points;
* ``2D here``: the 2D expansion of each labelled plane from its own 25 points (the bar for the
  planes with points: the 3D result must stay within 1 mIoU of it);
* ``2D dense``: the 2D expansion of each plane *without* points given 25 random points of its
  own (5x the clicks at K = 5; the bar for planes without points);
* ``copy``: each plane without points takes the 2D result of its nearest labelled plane (the 3D
  result must beat it by 5 mIoU).

Speed and memory: synthetic stacks built by tiling the EM slices (512 x 512 x 200 and
2048 x 2048 x 50 uint8), 25 random points on every 10th plane, each run in a fresh process
whose peak resident memory (``ru_maxrss``) is reported with seconds per megavoxel.

Usage::

    nice -n 5 python benchmarks/bench_volume.py [--seeds 0 1 2] [--every 2 5 10] [--no-speed]

Writes ``benchmarks/results/volume.md`` and ``benchmarks/results/volume.png``; with
``--sam2`` only the random-weight SAM2 video path, to ``benchmarks/results/volume_sam2.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "em_isbi2012"
RESULTS = ROOT / "benchmarks" / "results"
SPLITS = {"dev": range(0, 10), "report": range(10, 20)}
SPACING = (12.5, 1.0, 1.0)
PER_PLANE = 25


def _load(slices):
    from PIL import Image

    vol = np.stack([np.asarray(Image.open(DATA / "images" / f"{i:02d}.png").convert("L"))
                    for i in slices])
    gt = np.stack([np.asarray(Image.open(DATA / "masks" / f"{i:02d}.png")) for i in slices])
    return vol, gt


def quality(split: str, every: int, seeds, *, dense: bool) -> dict:
    """mIoU of each method on planes with and without points (one confusion matrix each)."""
    from napari_sseg.core.expand import expand
    from napari_sseg.core.metrics import ConfusionMatrix
    from napari_sseg.core.points import PointSet
    from napari_sseg.core.sampling import sample_points
    from napari_sseg.core.volume import expand_volume

    vol, gt = _load(SPLITS[split])
    labelled = list(range(0, len(vol), every))
    cms = {k: ConfusionMatrix() for k in ("3d_with", "3d_without", "2d_here", "2d_dense",
                                          "copy")}
    seconds = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        per = {z: sample_points(gt[z], PER_PLANE, rng=rng) for z in labelled}
        pts = PointSet(np.concatenate([per[z].coords for z in labelled]),
                       np.concatenate([per[z].labels for z in labelled]),
                       planes=np.concatenate([np.full(len(per[z]), z) for z in labelled]))
        t0 = time.process_time()
        res = expand_volume(vol, pts, spacing=SPACING)
        seconds.append(time.process_time() - t0)
        two = {z: expand(vol[z], per[z]).labels for z in labelled}
        for z in range(len(vol)):
            if z in labelled:
                cms["3d_with"].update(gt[z], res.labels[z])
                cms["2d_here"].update(gt[z], two[z])
                continue
            cms["3d_without"].update(gt[z], res.labels[z])
            near = min(labelled, key=lambda p: (abs(p - z), p))
            cms["copy"].update(gt[z], two[near])
            if dense:
                own = sample_points(gt[z], PER_PLANE, rng=np.random.default_rng(
                    [seed, 1000 + z]))
                cms["2d_dense"].update(gt[z], expand(vol[z], own).labels)
    out = {k: 100 * v.scores()["miou"] for k, v in cms.items() if v.counts.sum() > 0}
    out["points"] = PER_PLANE * len(labelled)
    out["s_per_mvox"] = float(np.median(seconds)) / (vol.size / 1e6)
    return out


_SPEED = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {src!r})
from PIL import Image
from napari_sseg.core.points import PointSet
from napari_sseg.core.volume import expand_volume
planes, size = {planes}, {size}
em = [np.asarray(Image.open({data!r} + f"/images/{{i:02d}}.png").convert("L")) for i in range(20)]
reps = size // 512
vol = np.empty((planes, size, size), np.uint8)
for z in range(planes):
    vol[z] = np.tile(em[z % 20], (reps, reps))
gts = [np.asarray(Image.open({data!r} + f"/masks/{{i:02d}}.png")) for i in range(20)]
rng = np.random.default_rng(0)
coords, labels, zs = [], [], []
for z in range(0, planes, 10):
    rc = rng.integers(0, size, size=(25, 2))
    coords.append(rc); labels.append(np.tile(gts[z % 20], (reps, reps))[rc[:, 0], rc[:, 1]])
    zs.append(np.full(25, z))
pts = PointSet(np.concatenate(coords), np.concatenate(labels), planes=np.concatenate(zs))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter(); c0 = time.process_time()
res = expand_volume(vol, pts, spacing=(12.5, 1, 1))
wall = time.perf_counter() - t0; cpu = time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"wall": wall, "cpu": cpu, "peak_mb": peak, "before_mb": base,
                  "mvox": vol.size / 1e6}}))
"""


_SPEED_SAM2 = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {src!r})
import torch
from PIL import Image
from napari_sseg.backends.sam2_video import SAM2VideoProposer, build_sam2_video_model
from napari_sseg.core.points import PointSet
from napari_sseg.core.progress import run_generator
from napari_sseg.core.volume import iter_hybrid_expand_volume
planes, size = {planes}, {size}
torch.manual_seed(0)
torch.set_num_threads(1)
predictor = build_sam2_video_model("tiny", device="cpu")  # random weights, 1024 input
vol = np.stack([np.asarray(Image.open({data!r} + f"/images/{{i:02d}}.png").convert("L"))[:size, :size]
                for i in range(planes)])
gt = np.asarray(Image.open({data!r} + "/masks/00.png"))[:size, :size]
rng = np.random.default_rng(0)
rc = rng.integers(0, size, size=(4, 2))
pts = PointSet(rc, gt[rc[:, 0], rc[:, 1]], planes=np.zeros(4, int))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter(); c0 = time.process_time()
res = run_generator(iter_hybrid_expand_volume(vol, pts, SAM2VideoProposer(predictor, chunk=planes)))
wall = time.perf_counter() - t0; cpu = time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"wall": wall, "cpu": cpu, "peak_mb": peak, "before_mb": base,
                  "mvox": vol.size / 1e6, "decided": res.info["decided_fraction"]}}))
"""


def speed_sam2(planes: int, size: int) -> dict:
    code = _SPEED_SAM2.format(src=str(ROOT / "src"), planes=planes, size=size, data=str(DATA))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def sam2_table(planes: int = 4, size: int = 256) -> None:
    """Seconds and peak memory of the random-weight SAM2 video path, to ``volume_sam2.md``."""
    s = speed_sam2(planes, size)
    print("sam2", s, flush=True)
    lines = [
        "# Volumes: the SAM2 video path (random weights)",
        "",
        "Generated by `benchmarks/bench_volume.py --sam2`. SAM2.1 tiny video predictor with "
        "random weights (1024 input, one CPU thread), 4 points on plane 0 carried forward and "
        "backward as 4 objects (chunk = the whole stack, frames and state offloaded to the "
        "CPU), then the weight-free volume expansion fills the rest. A fresh process; peak = "
        "its maximum resident memory (the model included). The cost is per plane (every plane "
        "is encoded at 1024 x 1024 whatever its size), so per megavoxel it depends on the plane "
        "size; measured on the shared 2-core machine under heavy load (noisy).",
        "",
        "| stack | Mvoxel | wall s | CPU s | CPU s / plane | CPU s / Mvoxel | peak MB | "
        "voxels decided by masks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| {planes} x {size} x {size} | {s['mvox']:.2f} | {s['wall']:.0f} | {s['cpu']:.0f} | "
        f"{s['cpu'] / planes:.1f} | {s['cpu'] / s['mvox']:.0f} | {s['peak_mb']:.0f} | "
        f"{100 * s['decided']:.0f} % |",
    ]
    (RESULTS / "volume_sam2.md").write_text("\n".join(lines) + "\n")


def speed(planes: int, size: int) -> dict:
    code = _SPEED.format(src=str(ROOT / "src"), planes=planes, size=size, data=str(DATA))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--every", type=int, nargs="+", default=[2, 5, 10])
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the rows and speeds saved in results/volume_rows.json by an "
                         "earlier (possibly interrupted) run instead of recomputing them")
    ap.add_argument("--sam2", action="store_true",
                    help="only the random-weight SAM2 video path (volume_sam2.md)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.sam2:
        sam2_table()
        return
    saved_path = RESULTS / "volume_rows.json"
    saved = json.loads(saved_path.read_text()) if args.reuse and saved_path.is_file() else {}
    saved.setdefault("rows", {})
    saved.setdefault("speed", {})
    rows = []
    for split in ("dev", "report"):
        for every in args.every:
            key = f"{split}/{every}/{','.join(map(str, args.seeds))}"
            r = saved["rows"].get(key) or quality(split, every, args.seeds, dense=(every == 5))
            saved["rows"][key] = r
            saved_path.write_text(json.dumps(saved, indent=1))
            rows.append((split, every, r))
            print(split, every, {k: round(v, 1) for k, v in r.items()}, flush=True)
    lines = [
        "# Volumes: points on every K-th plane of an EM stack",
        "",
        "Generated by `benchmarks/bench_volume.py`. `em_isbi2012` slices stacked as a volume "
        "(spacing 12.5, 1, 1); split `dev` = slices 0-9 (used to choose `plane_weight`), "
        "`report` = slices 10-19 (reported, not tuned on). 25 random oracle points on each "
        f"labelled plane (planes 0, K, 2K, ...), seeds {args.seeds}; one confusion matrix per "
        "cell over planes and seeds; mIoU in %. `2D dense`: the 2D expansion of each plane "
        "without points given 25 points of its own (measured at K = 5 only). `copy`: the 2D "
        "result of the nearest labelled plane.",
        "",
        "| split | every K | points | 3D, planes with points | 2D there | 3D, planes without "
        "| 2D dense there | copy nearest | CPU s / Mvoxel |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(r, k):
        return f"{r[k]:.1f}" if k in r else "-"

    for split, every, r in rows:
        lines.append(f"| {split} | {every} | {r['points']} | {f(r, '3d_with')} | "
                     f"{f(r, '2d_here')} | {f(r, '3d_without')} | {f(r, '2d_dense')} | "
                     f"{f(r, 'copy')} | {r['s_per_mvox']:.2f} |")
    if args.reuse and saved.get("note"):
        lines += ["", f"Reused from `results/volume_rows.json`: {saved['note']}."]
    rep5 = next((r for s, e, r in rows if s == "report" and e == 5), None)
    if rep5 is not None and "2d_dense" in rep5:
        lines += [
            "",
            "Bars on the report split at K = 5: planes without points "
            f"{rep5['3d_without']:.1f} against 2D dense {rep5['2d_dense']:.1f} "
            f"({'met' if rep5['3d_without'] >= rep5['2d_dense'] else 'missed'}) and copy "
            f"{rep5['copy']:.1f} + 5 "
            f"({'met' if rep5['3d_without'] >= rep5['copy'] + 5 else 'missed'}); planes with "
            f"points {rep5['3d_with']:.1f} against 2D {rep5['2d_here']:.1f} - 1 "
            f"({'met' if rep5['3d_with'] >= rep5['2d_here'] - 1 else 'missed'}).",
        ]
    if not args.no_speed:
        lines += ["", "## Speed and memory (weight-free path)", "",
                  "Fresh process per stack (EM slices tiled), 25 points on every 10th plane. "
                  "Peak = the process's maximum resident memory (Python, numpy, scipy, "
                  "scikit-image and the stack itself included).", "",
                  "| stack (planes x rows x cols) | Mvoxel | wall s | CPU s | CPU s / Mvoxel | "
                  "peak MB | peak MB / Mvoxel |", "|---|---:|---:|---:|---:|---:|---:|"]
        for planes, size in ((200, 512), (50, 2048)):
            s = saved["speed"].get(f"{planes}x{size}") or speed(planes, size)
            saved["speed"][f"{planes}x{size}"] = s
            saved_path.write_text(json.dumps(saved, indent=1))
            print(planes, size, s, flush=True)
            lines.append(f"| {planes} x {size} x {size} | {s['mvox']:.1f} | {s['wall']:.0f} | "
                         f"{s['cpu']:.0f} | {s['cpu'] / s['mvox']:.2f} | {s['peak_mb']:.0f} | "
                         f"{s['peak_mb'] / s['mvox']:.1f} |")
    (RESULTS / "volume.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for split, style in (("dev", "--"), ("report", "-")):
        es = [e for s, e, _ in rows if s == split]
        for key, label in (("3d_without", "3D, planes without points"),
                           ("3d_with", "3D, planes with points"),
                           ("copy", "copy nearest plane's 2D")):
            ax.plot(es, [r[key] for s, _, r in rows if s == split], style, marker="o",
                    label=f"{label} ({split})")
    ax.set_xlabel("points on every K-th plane (25 per labelled plane)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title("EM stack: mIoU vs spacing of labelled planes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "volume.png", dpi=120)


if __name__ == "__main__":
    main()
