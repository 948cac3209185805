"""Benchmark: time split of the hybrid SAM2 + maskSLIC expansion, and its peak memory.

SAM2.1 tiny with random weights on the CPU (no checkpoint can be downloaded here; the compute
does not depend on the weights' values). A real aerial tile of ``../shared/data/aerial_dubai``
is cropped to 512 x 512 and 1024 x 1024; 25 and 100 points are drawn from its ground truth
(seeded) and expanded with :func:`napari_sseg.core.fusion.iter_hybrid_expand`.

Columns: embedding (one per image), decoding (SAM2 prompt encoder + mask decoder on the
low-resolution logits, and the choice rule and the upsampling of the kept masks only, which run
while the next batch of points is decoded; the table also shows the time spent waiting for the
decoder and the time of the choice), conflicts, maskSLIC fill, and the total after the embedding. With random weights the predicted
IoUs are meaningless, so ``min_iou`` is set to 0 to keep masks (the realistic workload for the
conflict and fill steps). For reference the plain predictor path (``SAM2ImagePredictor.predict``
per point, three full-resolution masks each) is timed on the same image.

Peak memory: a 4096 x 4096 image (a real tile upscaled), 25 points, whole expansion, measured as
the peak resident set size of a fresh process.

Each expansion is repeated ``--repeats`` times and the run with the median time after the
embedding is reported; the load average before and after the timings is written with the table
(other processes on a shared machine slow everything down).

Usage::

    python benchmarks/bench_sam2.py [--repeats 3] [--no-write]

Writes ``benchmarks/results/sam2_timing.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "aerial_dubai"
RESULTS = REPO / "benchmarks" / "results" / "sam2_timing.md"


def _load_tile():
    from PIL import Image

    img = sorted((DATA / "images").glob("tile5_image_part_001.*"))[0]
    mask = DATA / "masks" / (img.stem + ".png")
    return np.asarray(Image.open(img).convert("RGB")), np.asarray(Image.open(mask))


def _points(gt, n, seed=0):
    from napari_sseg.core.points import PointSet

    rng = np.random.default_rng(seed)
    rr, cc = np.nonzero(gt != 255)
    pick = rng.choice(rr.size, n, replace=False)
    return PointSet(np.c_[rr[pick], cc[pick]], gt[rr[pick], cc[pick]].astype(np.int64))


def median_run(img, pts, proposer, repeats):
    """Expand ``repeats`` times (``min_iou=0``): the median run's time after the embedding,
    its timings and its info."""
    from napari_sseg.core.fusion import HybridOptions, iter_hybrid_expand
    from napari_sseg.core.progress import run_generator

    runs = []
    for _ in range(repeats):
        res = run_generator(iter_hybrid_expand(img, pts, proposer,
                                               hybrid=HybridOptions(min_iou=0.0)))
        t = res.info["timings"]
        runs.append((t["decoding"] + t["conflicts"] + t["fill"], t, res.info))
    runs.sort(key=lambda run: run[0])
    return runs[len(runs) // 2]


def timing_rows(repeats: int):
    import torch

    from napari_sseg.backends.sam2 import SAM2Proposer, build_sam2_model

    torch.manual_seed(0)
    model = build_sam2_model("tiny", device="cpu")
    image, gt = _load_tile()
    rows = []
    for side in (512, 1024):
        img, g = np.ascontiguousarray(image[:side, :side]), gt[:side, :side]
        proposer = SAM2Proposer("tiny", sam_model=model)
        t0 = time.perf_counter()
        proposer.set_image(img)
        embed = time.perf_counter() - t0
        for n in (25, 100):
            pts = _points(g, n)
            after, t, info = median_run(img, pts, proposer, repeats)
            rows.append({
                "size": f"{side}x{side}", "points": n, "embedding": embed,
                "decode_wait": t["decoding_wait"], "decode_choice": t["decoding_choice"],
                "decoding": t["decoding"], "per_point_ms": 1000 * t["decoding"] / n,
                "conflicts": t["conflicts"], "fill": t["fill"], "after_embedding": after,
                "accepted": info["masks"]["accepted"], "covered": info["covered_fraction"],
            })
            print(json.dumps(rows[-1]), flush=True)
    # the plain predictor path, 25 points at 1024 x 1024, for comparison
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    img = np.ascontiguousarray(image[:1024, :1024])
    pts = _points(gt[:1024, :1024], 25)
    predictor = SAM2ImagePredictor(model)
    with torch.inference_mode():
        predictor.set_image(img)
        t0 = time.perf_counter()
        for r, c in pts.coords:
            predictor.predict(point_coords=np.array([[c, r]]), point_labels=np.array([1]),
                              multimask_output=True)
        plain = time.perf_counter() - t0
    print("plain predictor, 25 points at 1024:", plain, flush=True)
    paired = paired_decoding(model, img, pts)
    return rows, plain, paired


def paired_decoding(model, img, pts):
    """Per-point decode times of three paths, interleaved point by point so load drifts cancel.

    plain: ``SAM2ImagePredictor.predict`` (three full-resolution masks); sam-decoder: our
    low-resolution path calling SAM2's ``sam_mask_decoder`` as is, then the choice rule and the
    upsampling of the kept mask only; fast: the same with the regrouped decoder. One prompt at a
    time with one torch thread for all three, so that the table compares the work of each path
    (the default path spreads several prompts over worker threads: see the first table).
    """
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from napari_sseg.backends.base import upsample_crop
    from napari_sseg.backends.sam2 import SAM2Proposer
    from napari_sseg.core.fusion import HybridOptions, choose_candidate

    predictor = SAM2ImagePredictor(model)
    fast = SAM2Proposer("tiny", sam_model=model, batch_size=1)
    slow = SAM2Proposer("tiny", sam_model=model, batch_size=1, fast_decoder=False, workers=1)
    with torch.inference_mode():
        predictor.set_image(img)
    fast.set_image(img)
    slow._use(fast._features, fast._image_shape)
    rows, cols = pts.pixel_indices()
    opts = HybridOptions(min_iou=0.0)
    times = {"plain": [], "sam-decoder": [], "fast": []}

    def ours(proposer, i):
        cand = proposer.predict(pts.coords[i:i + 1])
        choice = choose_candidate(cand.logits[0], cand.iou[0], i, rows, cols, pts.labels,
                                  img.shape[:2], opts)
        if choice.index >= 0:
            upsample_crop(choice.logits, img.shape[:2])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for i in range(len(pts)):
        r, c = pts.coords[i]
        t0 = time.perf_counter()
        with torch.inference_mode():
            predictor.predict(point_coords=np.array([[c, r]]), point_labels=np.array([1]),
                              multimask_output=True)
        t1 = time.perf_counter()
        ours(slow, i)
        t2 = time.perf_counter()
        ours(fast, i)
        t3 = time.perf_counter()
        times["plain"].append(t1 - t0)
        times["sam-decoder"].append(t2 - t1)
        times["fast"].append(t3 - t2)
    torch.set_num_threads(threads)
    out = {k: {"median_ms": 1000 * float(np.median(v)), "total_s": float(np.sum(v))}
           for k, v in times.items()}
    print("paired:", json.dumps(out), flush=True)
    return out


_PEAK_SCRIPT = r"""
import resource, sys, time, json
import numpy as np
from PIL import Image
import torch
from napari_sseg.backends.sam2 import SAM2Proposer, build_sam2_model
from napari_sseg.core.fusion import HybridOptions, iter_hybrid_expand
from napari_sseg.core.points import PointSet
from napari_sseg.core.progress import run_generator
img = np.asarray(Image.open(sys.argv[1]).convert("RGB").resize((4096, 4096), Image.Resampling.BILINEAR))
gt = np.asarray(Image.open(sys.argv[2]).resize((4096, 4096), Image.Resampling.NEAREST))
rng = np.random.default_rng(0)
rr, cc = np.nonzero(gt != 255)
pick = rng.choice(rr.size, 25, replace=False)
pts = PointSet(np.c_[rr[pick], cc[pick]], gt[rr[pick], cc[pick]].astype(np.int64))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
torch.manual_seed(0)
model = build_sam2_model("tiny", device="cpu")
t0 = time.perf_counter()
res = run_generator(iter_hybrid_expand(img, pts, SAM2Proposer("tiny", sam_model=model),
                                       hybrid=HybridOptions(min_iou=0.0)))
total = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert res.labels.shape == (4096, 4096)
print(json.dumps({"peak_rss_kb": peak, "before_model_kb": before, "seconds": total,
                  "timings": res.info["timings"], "accepted": res.info["masks"]["accepted"]}))
"""


def peak_memory():
    from PIL import Image  # noqa: F401

    img = sorted((DATA / "images").glob("tile5_image_part_001.*"))[0]
    mask = DATA / "masks" / (img.stem + ".png")
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(img), str(mask)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min) / {five:.1f} (5 min)"


def write_table(rows, plain, paired, peak, path: Path, load=("?", "?"), repeats=1):
    import torch

    lines = [
        "# SAM2 hybrid expansion: time split and peak memory",
        "",
        f"Generated by `benchmarks/bench_sam2.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads (the decoder runs "
        f"{torch.get_num_threads()} worker threads with one torch thread each). CPU only: tiny "
        "and large on a GPU are timed by `benchmarks/bench_sam2_gpu.py` (`sam2_gpu.md`).",
        "",
        "SAM2.1 tiny, random weights (compute does not depend on the weights' values), CPU, a real "
        "aerial tile (aerial_dubai tile5 part 001) cropped to the size shown, points drawn from its "
        f"ground truth (seed 0), `min_iou=0` so that masks are kept. Seconds; the median of "
        f"{repeats} runs after the embedding.",
        "",
        f"Load average of the machine before the timings: {load[0]}; after: {load[1]} (2 cores; "
        "a load above about 1 means other processes shared the CPU and the timings are "
        "pessimistic).",
        "",
        "| image | points | embedding | decoding | of which waiting for the decoder | "
        "choice + upsample (overlapped) | per point (ms) | conflicts | maskSLIC fill | "
        "after embedding | masks kept | covered |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['points']} | {r['embedding']:.2f} | {r['decoding']:.2f} | "
            f"{r['decode_wait']:.2f} | {r['decode_choice']:.2f} | {r['per_point_ms']:.0f} | {r['conflicts']:.2f} | "
            f"{r['fill']:.2f} | {r['after_embedding']:.2f} | {r['accepted']} | {r['covered']:.0%} |"
        )
    r1024 = next((r for r in rows if r["size"] == "1024x1024" and r["points"] == 25), None)
    if r1024 is not None:
        lines += [
            "",
            f"Bar of issue 3 (set for these CPUs when quiet): decoding 25 points at 1024x1024 "
            f"under 0.75 s (here {r1024['decoding']:.2f} s), the whole expansion after the "
            f"embedding under 2 s (here {r1024['after_embedding']:.2f} s), peak memory at "
            f"4096x4096 under 4 GB (here {peak['peak_rss_kb'] / 1024**2:.2f} GB).",
        ]
    lines += [
        "",
        f"Plain predictor path on the same run (`SAM2ImagePredictor.predict` per point, three "
        f"full-resolution masks each), 25 points at 1024x1024: {plain:.2f} s "
        f"({1000 * plain / 25:.0f} ms per point).",
        "",
        "## Decoding paths compared point by point (1024 x 1024, 25 points)",
        "",
        "The three paths are timed alternately on each point, so that changes of the machine's "
        "load hit them alike (per point, decoding of one prompt plus, for ours, the choice rule "
        "and the upsampling of the kept mask), all with one torch thread: the table compares "
        "the work of each path.",
        "",
        "| path | median per point (ms) | 25 points (s) |",
        "|---|---|---|",
        f"| SAM2ImagePredictor.predict, 3 full-resolution masks | "
        f"{paired['plain']['median_ms']:.0f} | {paired['plain']['total_s']:.2f} |",
        f"| low-resolution logits, SAM2's mask decoder as is | "
        f"{paired['sam-decoder']['median_ms']:.0f} | {paired['sam-decoder']['total_s']:.2f} |",
        f"| low-resolution logits, regrouped decoder (default) | "
        f"{paired['fast']['median_ms']:.0f} | {paired['fast']['total_s']:.2f} |",
        "",
        "## Peak memory, 4096 x 4096 image",
        "",
        f"Whole hybrid expansion (tiny, CPU, 25 points, masks kept as bounding-box crops, the image "
        f"box-filtered to 1024 x 1024 before SAM2): peak resident memory "
        f"**{peak['peak_rss_kb'] / 1024**2:.2f} GB** for the whole process (Python, torch, the model, "
        f"the 48 MB image and every intermediate), {peak['seconds']:.1f} s in all "
        f"(embedding {peak['timings']['embedding']:.1f} s, fill {peak['timings']['fill']:.1f} s), "
        f"{peak['accepted']} masks kept.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, path)
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    load_before = _load()
    rows, plain, paired = timing_rows(args.repeats)
    load_after = _load()
    peak = peak_memory()
    print(json.dumps(peak))
    if not args.no_write:
        write_table(rows, plain, paired, peak, RESULTS, (load_before, load_after), args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
