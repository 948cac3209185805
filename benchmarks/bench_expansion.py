"""Weight-free expansion against three classic baselines on the same sampled points.

For each labelled set in ``../shared/data`` (coral_eilat, aerial_dubai, em_isbi2012) and each
budget of random points per image (10, 25, 50, 100, 300) and seed (0, 1, 2), the same points go to
the default expansion and to the baselines (nearest labelled point, single-scale SLIC vote,
multi-level SLIC). One confusion matrix per set, budget and method is accumulated over all images
and seeds; the table reports mIoU, mean class accuracy, pixel accuracy and seconds per megapixel.

Per-image confusion matrices are cached under ``benchmarks/results/cache/`` keyed by method,
so re-running after a change to the expansion recomputes only the expansion.

Usage::

    python benchmarks/bench_expansion.py [--sets coral_eilat ...] [--budgets 10 25 ...]
        [--seeds 0 1 2] [--methods ours nearest slic_vote multilevel_slic] [--jobs 2]

Writes ``benchmarks/results/expansion.md`` and ``benchmarks/results/expansion.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cache"
SETS = ("coral_eilat", "aerial_dubai", "em_isbi2012")
BUDGETS = (10, 25, 50, 100, 300)
METHODS = ("ours", "nearest", "slic_vote", "multilevel_slic")


def _load(set_name: str, image_path: Path):
    from napari_sseg.io.images import read_image, read_label_image

    gt = read_label_image(DATA / set_name / "masks" / (image_path.stem + ".png"))
    return read_image(image_path), gt


def _method_key(method: str) -> str:
    """Cache key: the baselines are fixed; ours depends on its options and source."""
    if method != "ours":
        src = (ROOT / "src/napari_sseg/core/baselines.py").read_bytes()
        return f"{method}-{hashlib.sha1(src).hexdigest()[:8]}"
    from napari_sseg.core.expand import ExpandOptions

    h = hashlib.sha1(json.dumps(asdict(ExpandOptions()), sort_keys=True).encode())
    for name in ("expand.py", "appearance.py", "superpixels.py", "image.py"):
        h.update((ROOT / "src/napari_sseg/core" / name).read_bytes())
    return f"ours-{h.hexdigest()[:8]}"


def _run_image(args):
    """Every budget, seed and method on one image (baseline superpixels computed once)."""
    set_name, image_path, budgets, seeds, methods, keys = args
    from napari_sseg.core.baselines import (
        MULTILEVEL_LEVELS,
        multilevel_slic_labels,
        nearest_point_labels,
        slic_segments,
        slic_vote_labels,
    )
    from napari_sseg.core.expand import expand
    from napari_sseg.core.metrics import ConfusionMatrix
    from napari_sseg.core.sampling import sample_points
    from napari_sseg.io.atomic import atomic_write_json

    stem = Path(image_path).stem
    image = gt = None
    segs: dict[int, np.ndarray] = {}
    seg_cpu: dict[int, float] = {}

    def seg(n):
        if n not in segs:
            t = time.process_time()
            segs[n] = slic_segments(image, n)
            seg_cpu[n] = time.process_time() - t
        return segs[n]

    out = []
    for budget in budgets:
        for seed in seeds:
            for method in methods:
                path = CACHE / set_name / keys[method] / f"{stem}_n{budget}_s{seed}.json"
                if path.exists():
                    out.append(((set_name, budget, seed, method), json.loads(path.read_text())))
                    continue
                if image is None:
                    image, gt = _load(set_name, Path(image_path))
                # the points depend on image, budget and seed only: every method sees the same
                stem_hash = int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16)
                points = sample_points(gt, budget, rng=[seed, budget, stem_hash])
                t0 = time.process_time()
                if method == "ours":
                    pred = expand(image, points).labels
                    extra = 0.0
                elif method == "nearest":
                    pred = nearest_point_labels(gt.shape, points)
                    extra = 0.0
                elif method == "slic_vote":
                    pred = slic_vote_labels(image, points, segments=seg(1000))
                    extra = seg_cpu[1000]
                else:
                    levels = sorted(MULTILEVEL_LEVELS)
                    pred = multilevel_slic_labels(image, points, segments=[seg(n) for n in levels])
                    extra = sum(seg_cpu[n] for n in levels)
                # superpixels are computed once per image here; charge their cost to every run
                cpu = time.process_time() - t0 + extra
                cm = ConfusionMatrix()
                cm.update(gt, pred)
                rec = {"matrix": cm.matrix.tolist(), "cpu_s": cpu, "megapixels": gt.size / 1e6}
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(path, rec)
                out.append(((set_name, budget, seed, method), rec))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-report", action="store_true", help="fill the cache only")
    args = ap.parse_args(argv)

    from napari_sseg.core.metrics import segmentation_scores

    keys = {m: _method_key(m) for m in args.methods}
    tasks = []
    for s in args.sets:
        for p in sorted(q for q in (DATA / s / "images").iterdir() if q.is_file()):
            tasks.append((s, str(p), args.budgets, args.seeds, args.methods, keys))
    with ProcessPoolExecutor(args.jobs) as pool:
        records = [r for chunk in pool.map(_run_image, tasks) for r in chunk]
    if args.no_report:
        return 0

    table = {}
    for (s, b, _, m), rec in records:
        cell = table.setdefault((s, b, m), {"cm": None, "cpu": 0.0, "mp": 0.0})
        mat = np.asarray(rec["matrix"], dtype=np.int64)
        if cell["cm"] is None:
            cell["cm"] = mat
        else:
            k = max(cell["cm"].shape[0], mat.shape[0])
            grown = np.zeros((k, k), dtype=np.int64)
            grown[: cell["cm"].shape[0], : cell["cm"].shape[0]] += cell["cm"]
            grown[: mat.shape[0], : mat.shape[0]] += mat
            cell["cm"] = grown
        cell["cpu"] += rec["cpu_s"]
        cell["mp"] += rec["megapixels"]
    scores = {k: {**segmentation_scores(v["cm"]), "s_per_mp": v["cpu"] / v["mp"]}
              for k, v in table.items()}
    _write_report(scores, args)
    return 0


def _write_report(scores, args) -> None:
    from napari_sseg.io.atomic import atomic_write_text

    lines = [
        "# Weight-free expansion vs classic baselines",
        "",
        "Same random points for every method (sampled from annotated pixels; the ground truth is",
        f"used for scoring only). Seeds {args.seeds}; one confusion matrix per set, budget and",
        "method over all images and seeds; 255 ignored; means over classes present in the ground",
        "truth. `s/MP` is CPU seconds (one process) per megapixel, measured on a shared 2-core",
        "machine (noisy). Generated by `benchmarks/bench_expansion.py`.",
        "",
    ]
    bar_lines = []
    for s in args.sets:
        lines += [f"## {s}", "", "| points | method | mIoU | mean class acc. | pixel acc. | s/MP |",
                  "|---:|---|---:|---:|---:|---:|"]
        for b in args.budgets:
            for m in args.methods:
                sc = scores.get((s, b, m))
                if sc is None:
                    continue
                lines.append(f"| {b} | {m} | {100 * sc['miou']:.1f} | "
                             f"{100 * sc['mean_class_accuracy']:.1f} | "
                             f"{100 * sc['pixel_accuracy']:.1f} | {sc['s_per_mp']:.2f} |")
            if "ours" in args.methods and b in (25, 100):
                best = max((scores[(s, b, m)]["miou"], m) for m in args.methods
                           if m != "ours" and (s, b, m) in scores)
                gain = 100 * (scores[(s, b, "ours")]["miou"] - best[0])
                bar_lines.append(f"| {s} | {b} | {100 * scores[(s, b, 'ours')]['miou']:.1f} | "
                                 f"{best[1]} {100 * best[0]:.1f} | {gain:+.1f} | "
                                 f"{'yes' if gain >= 3 else 'NO'} |")
        lines.append("")
    if bar_lines:
        lines += ["## The bar: at least 3 mIoU points above the best baseline at 25 and 100 points",
                  "", "| set | points | ours | best baseline | gain | met |",
                  "|---|---:|---:|---|---:|---|", *bar_lines, ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "expansion.md", "\n".join(lines))
    _plot(scores, args)


def _plot(scores, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.sets), figsize=(4.2 * len(args.sets), 3.6), squeeze=False)
    for ax, s in zip(axes[0], args.sets):
        for m in args.methods:
            xs = [b for b in args.budgets if (s, b, m) in scores]
            ax.plot(xs, [100 * scores[(s, b, m)]["miou"] for b in xs], marker="o", label=m,
                    linewidth=2.5 if m == "ours" else 1.2)
        ax.set_xscale("log")
        ax.set_xticks(list(args.budgets))
        ax.set_xticklabels([str(b) for b in args.budgets])
        ax.set_xticks([], minor=True)  # no 3x10^1-style labels between few budgets
        ax.set_title(s)
        ax.set_xlabel("points per image")
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    tmp = RESULTS / ".expansion.png.tmp"
    fig.savefig(tmp, dpi=110, format="png")
    tmp.replace(RESULTS / "expansion.png")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
