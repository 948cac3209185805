"""Images per minute of ``napari-sseg expand`` against workers, and byte identity across runners.

Builds 48 images of 0.3-1 megapixel in a temporary folder from ``../shared/data`` (16 aerial
tiles, 16 coral photos, 16 EM slices; each cropped, or enlarged for the small EM slices, to a
seeded size in that range) with 25 random points each drawn from its ground truth (seeded), then
times the whole command (``napari-sseg expand ... -q`` in a fresh process: start-up, cluster
start, every image, shutdown) serially (``--workers 1``, no Dask) and with ``--workers N``,
interleaved (serial, N, N, serial, ...) so that a change of load on a shared machine hits both.
Checks that every label mask and overlay is byte-identical to the serial run's; optionally also
for ``--scheduler`` against a scheduler and two workers started as separate processes on loopback
(``--scheduler-check``) and for a run killed with SIGKILL after a third of the images and
then resumed (``--kill-check``).

Usage::

    nice -n 5 python benchmarks/bench_batch.py [--images 48] [--workers 2] [--repeats 2]
        [--scheduler-check] [--kill-check]

Writes ``benchmarks/results/batch.md``, ``batch.json`` and ``batch.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CLI = [sys.executable, "-c", "import sys; from napari_sseg.cli import main; sys.exit(main())"]


def build_set(folder: Path, n: int) -> tuple[Path, Path]:
    """``n`` images of 0.3-1 MP (a third each aerial, coral, EM) and a points CSV."""
    from PIL import Image

    from napari_sseg.core.sampling import sample_points
    from napari_sseg.io import (
        read_image,
        read_label_image,
        write_label_image,
        write_points_csv,
        write_rgb,
    )

    rng = np.random.default_rng(0)
    images = folder / "images"
    images.mkdir(parents=True)
    sets = ["aerial_dubai", "coral_eilat", "em_isbi2012"]
    per = [n // 3 + (i < n % 3) for i in range(3)]
    points = {}
    for name, count in zip(sets, per):
        files = sorted((DATA / name / "images").iterdir())
        picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, count)] if count else []
        for k, path in enumerate(picks):
            img = read_image(path)
            gt = read_label_image(DATA / name / "masks" / f"{path.stem}.png")
            mp = rng.uniform(0.3, 1.0) * 1e6
            aspect = img.shape[1] / img.shape[0]
            h = round(np.sqrt(mp / aspect))
            w = round(h * aspect)
            if h > img.shape[0] or w > img.shape[1]:  # enlarge (EM slices are 0.26 MP)
                s = max(h / img.shape[0], w / img.shape[1])
                size = (int(np.ceil(img.shape[1] * s)), int(np.ceil(img.shape[0] * s)))
                img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
                gt = np.asarray(Image.fromarray(gt).resize(size, Image.NEAREST))
            r0 = int(rng.integers(0, img.shape[0] - h + 1))
            c0 = int(rng.integers(0, img.shape[1] - w + 1))
            img, gt = img[r0:r0 + h, c0:c0 + w], gt[r0:r0 + h, c0:c0 + w]
            stem = f"{name.split('_')[0]}_{k:02d}"
            if img.ndim == 2:
                from napari_sseg.io.atomic import atomic_open

                with atomic_open(images / f"{stem}.png", "wb") as fh:
                    Image.fromarray(img).save(fh, format="PNG")
            else:
                write_rgb(images / f"{stem}.png", img)
            write_label_image(folder / f"{stem}_gt.png", gt)
            points[f"{stem}.png"] = sample_points(gt, 25, rng=len(points))
    csv = write_points_csv(folder / "points.csv", points)
    return images, csv


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_cli(images: Path, csv: Path, out: Path, *extra: str, cpu: list | None = None) -> float:
    """Wall seconds of the whole command; appends its CPU seconds (with its workers) to cpu."""
    shutil.rmtree(out, ignore_errors=True)
    c0 = _children_cpu()
    t0 = time.perf_counter()
    subprocess.run([*CLI, "expand", str(images), "--points", str(csv), "--out", str(out), "-q",
                    *extra], check=True)
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(_children_cpu() - c0)
    return wall


def kill_and_resume(images: Path, csv: Path, out: Path, n: int) -> dict:
    """Kill a serial run with SIGKILL once a third of the images are written, then resume."""
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen([*CLI, "expand", str(images), "--points", str(csv), "--out",
                             str(out), "-q"])
    while len(list(out.glob("*_overlay.png"))) < max(1, n // 3) and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rec = json.loads((out / "run.json").read_text())
    done = {e["key"] for e in rec["images"] if e["status"] == "ok"}
    stamps = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.glob("*.png")
              if p.name.replace("_overlay", "") in done}
    strays_after_kill = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    t0 = time.perf_counter()
    subprocess.run([*CLI, "expand", str(images), "--points", str(csv), "--out", str(out), "-q",
                    "--resume"], check=True)
    untouched = all((p.stat().st_mtime_ns, p.stat().st_ino) == stamps[p.name]
                    for p in out.glob("*.png") if p.name in stamps)
    return {"killed_rc": proc.returncode, "done_before_kill": len(done),
            "stray_tmp_after_kill": strays_after_kill,
            "stray_tmp_after_resume": [p.name for p in out.iterdir() if p.name.endswith(".tmp")],
            "finished_untouched": untouched, "resume_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--repeats", type=int, default=2, help="runs of each setting (interleaved)")
    ap.add_argument("--scheduler-check", action="store_true")
    ap.add_argument("--kill-check", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        images, csv = build_set(tmp / "data", args.images)
        mps = [np.prod(__import__("PIL.Image", fromlist=["Image"]).open(p).size) / 1e6
               for p in sorted(images.iterdir())]
        settings = [1, *args.workers]
        times: dict[int, list[float]] = {w: [] for w in settings}
        loads: dict[int, list[float]] = {w: [] for w in settings}
        cpus: dict[int, list[float]] = {w: [] for w in settings}
        reference = None
        identical = {}
        for rep in range(args.repeats):
            order = settings if rep % 2 == 0 else settings[::-1]
            for w in order:
                out = tmp / f"out_w{w}"
                before = os.getloadavg()[0]
                times[w].append(run_cli(images, csv, out, "--workers", str(w), cpu=cpus[w]))
                loads[w].append((before + os.getloadavg()[0]) / 2)
                got = outputs(out)
                if w == 1 and reference is None:
                    reference = got
                identical.setdefault(f"--workers {w}", True)
                if reference is not None:
                    identical[f"--workers {w}"] &= got == reference
                print(f"workers {w}: {times[w][-1]:.1f} s (load {loads[w][-1]:.1f})",
                      file=sys.stderr)
        extra = {}
        if args.scheduler_check:
            from napari_sseg.batch import loopback_cluster

            with loopback_cluster(tmp / "dask", workers=2) as address:
                t = run_cli(images, csv, tmp / "out_sched", "--scheduler", address)
            identical["--scheduler (2 workers)"] = outputs(tmp / "out_sched") == reference
            extra["scheduler_s"] = t
        if args.kill_check:
            kr = kill_and_resume(images, csv, tmp / "out_kill", args.images)
            identical["kill -9 then --resume"] = outputs(tmp / "out_kill") == reference
            extra["kill"] = kr
        n = args.images
        rows = []
        serial = statistics.median(times[1])
        for w in settings:
            med = statistics.median(times[w])
            rows.append({"workers": w, "runs_s": [round(t, 1) for t in times[w]],
                         "median_s": round(med, 1), "images_per_min": round(60 * n / med, 1),
                         "speedup": round(serial / med, 2),
                         "cpu_s": round(statistics.median(cpus[w]), 1),
                         "load": round(statistics.mean(loads[w]), 1)})
        result = {"images": n, "megapixels": [round(min(mps), 2), round(max(mps), 2)],
                  "cpus": os.cpu_count(), "machine": platform.platform(), "rows": rows,
                  "identical": identical, **extra}
        tag = f"_{args.tag}" if args.tag else ""
        (RESULTS / f"batch{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
        lines = [
            f"# `napari-sseg expand` on {n} images: serial against local Dask workers",
            "",
            (f"{n} images of {min(mps):.2f}-{max(mps):.2f} MP (aerial, coral, EM from "
             f"`../shared/data`, seeded crops), 25 random points each, weight-free superpixel "
             f"backend. Wall time of the whole command in a fresh process (start-up, cluster "
             f"start, all images, shutdown); runs interleaved; {os.cpu_count()} CPUs "
             f"({platform.machine()}), load average (1 min) during the runs as given (other "
             f"work on the machine competes for the cores when it exceeds the cores). CPU: "
             f"user + system seconds of the command and its worker processes (median)."),
            "",
            ("| workers | runs (s) | median (s) | images / min | speed-up vs serial | CPU (s) | "
             "load |"),
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            name = "1 (serial, no Dask)" if r["workers"] == 1 else str(r["workers"])
            lines.append(f"| {name} | {', '.join(map(str, r['runs_s']))} | {r['median_s']} | "
                         f"{r['images_per_min']} | {r['speedup']}x | {r['cpu_s']} | "
                         f"{r['load']} |")
        lines += ["", ("Byte-identical label masks and overlays (all images) against the "
                       "serial run:"), ""]
        lines += [f"- {k}: {'yes' if v else 'NO'}" for k, v in identical.items()]
        if "kill" in extra:
            k = extra["kill"]
            lines.append(f"- kill -9 after {k['done_before_kill']} recorded images (exit "
                         f"{k['killed_rc']}), stray temp files after the kill "
                         f"{k['stray_tmp_after_kill'] or 'none'}, after --resume "
                         f"{k['stray_tmp_after_resume'] or 'none'}; finished images untouched "
                         f"(inode, mtime): {'yes' if k['finished_untouched'] else 'NO'}; "
                         f"resume {k['resume_s']:.1f} s")
        (RESULTS / f"batch{tag}.md").write_text("\n".join(lines) + "\n")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar([str(r["workers"]) for r in rows], [r["images_per_min"] for r in rows],
               color=["#888"] + ["#3a7"] * (len(rows) - 1))
        for i, r in enumerate(rows):
            ax.text(i, r["images_per_min"], f"{r['speedup']}x", ha="center", va="bottom")
        ax.set_xlabel("workers (1 = serial, no Dask)")
        ax.set_ylabel("images per minute")
        ax.set_title(f"expand, {n} images of 0.3-1 MP, {os.cpu_count()} CPUs")
        fig.tight_layout()
        fig.savefig(RESULTS / f"batch{tag}.png", dpi=120)
        print("\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
