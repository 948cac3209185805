"""Benchmark: suggested points against random and grid points at the same budget.

For every labelled set in ``../shared/data`` (``coral_eilat``, ``aerial_dubai``, ``em_isbi2012``),
every budget (10, 25, 50 points per image) and every seed, points are drawn

- ``random``: uniformly among annotated pixels (:func:`napari_sseg.core.sampling.sample_points`),
- ``grid``: on a regular grid with a seeded offset (same function),
- ``suggest``: by :func:`napari_sseg.core.suggest.suggest_points`, one batch at a time with the
  oracle answering the class of each suggested point (the simulated user), re-expanding after every
  batch; the first batch has no point and no expansion (pure exploration),

and expanded with the same expansion (:func:`napari_sseg.core.expand.expand`, default options).
Scores come from one confusion matrix per set, strategy, budget and seed (mIoU over the classes in
the ground truth, 255 ignored); the table gives the mean over seeds and its spread.

``natural_bsds500`` is left out: its masks hold arbitrary per-image region ids, not classes, so one
confusion matrix over a set is meaningless and "class" points carry no semantic information.

The suggestion loop is written here rather than taken from :mod:`napari_sseg.core.simulate`
(whose ``iter_simulate`` does the same thing: suggest a batch, ask the oracle, expand, repeat):
``iter_simulate`` has one fixed batch size and returns only its final expansion, so scoring 10, 25
and 50 points would need three separate runs; here one run per image and seed is scored at every
budget on the way, with far fewer expansions on the shared CPU.

Default rounds: 5, 5, 5, 5, 5 (scored at 10 and 25), then 10 and 15 (scored at 50).

Usage::

    python benchmarks/bench_suggest.py [--every 3] [--seeds 3] [--jobs 2]
    python benchmarks/bench_suggest.py --latency   # 1024 x 1024 latency only

Writes ``benchmarks/results/suggest.md`` and ``benchmarks/results/suggest.png``
(``--latency``: ``benchmarks/results/suggest_latency.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_SSEG_DATA", ROOT.parent / "shared" / "data"))
SETS = ("coral_eilat", "aerial_dubai", "em_isbi2012")
STRATEGIES = ("random", "grid", "suggest")


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def list_images(name: str, every: int, start: int = 0) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of one set, every ``every``-th in sorted order from ``start``."""
    masks = {p.stem: p for p in (DATA / name / "masks").iterdir()}
    pairs = [(p, masks[p.stem]) for p in sorted((DATA / name / "images").iterdir()) if p.stem in masks]
    return pairs[start::every]


def run_image(task: dict) -> dict:
    """All strategies, budgets of one image and seed; returns confusion matrices and timings."""
    from napari_sseg.core.expand import expand
    from napari_sseg.core.metrics import IGNORE, ConfusionMatrix
    from napari_sseg.core.points import PointSet
    from napari_sseg.core.sampling import oracle_labels, sample_points
    from napari_sseg.core.suggest import SuggestOptions, suggest_points

    image = _read(Path(task["image"]))
    gt = _read(Path(task["mask"]))
    budgets = sorted(task["budgets"])
    seed = task["seed"]
    ignore = gt == IGNORE
    out = {"matrices": {}, "suggest_s": 0.0, "suggested": 0}

    def score(pts: PointSet) -> np.ndarray:
        cm = ConfusionMatrix()
        cm.update(gt, expand(image, pts).labels)
        return cm.matrix

    for strategy in [k for k in ("random", "grid") if k in task["strategies"]]:
        for b in budgets:
            rng = np.random.default_rng([seed, task["index"], b])
            pts = sample_points(gt, b, strategy=strategy, rng=rng)
            out["matrices"][f"{strategy}/{b}"] = score(pts).tolist()

    opts = SuggestOptions(**task.get("options", {}))
    if "suggest" not in task["strategies"]:
        return out
    pts = PointSet.empty()
    expansion = None
    for size in task["batches"]:
        if len(pts) >= budgets[-1]:
            break
        t0 = time.perf_counter()
        coords = suggest_points(image, pts, expansion, size, ignore_mask=ignore,
                                seed=seed * 100_003 + task["index"] * 101 + len(pts), options=opts)
        out["suggest_s"] += time.perf_counter() - t0
        out["suggested"] += len(coords)
        if len(coords) == 0:
            break
        pts = pts.appended(coords, oracle_labels(gt, coords))
        expansion = expand(image, pts)
        if len(pts) in budgets:
            cm = ConfusionMatrix()
            cm.update(gt, expansion.labels)
            out["matrices"][f"suggest/{len(pts)}"] = cm.matrix.tolist()
    out["pixels"] = int(gt.size)
    return out


def latency(repeats: int = 7) -> str:
    """Median time of one suggestion (and of a batch of 10) at 1024 x 1024 after an expansion."""
    from napari_sseg.core.expand import expand
    from napari_sseg.core.sampling import sample_points
    from napari_sseg.core.suggest import acquisition_map, suggest_points

    img_path, mask_path = list_images("coral_eilat", 1)[0]
    image, gt = _read(img_path), _read(mask_path)
    pad = 1024 - image.shape[0]  # 920 rows: reflect to 1024, crop columns to 1024
    image = np.pad(image, ((0, pad), (0, 0), (0, 0)), mode="reflect")[:, :1024]
    gt = np.pad(gt, ((0, pad), (0, 0)), mode="reflect")[:, :1024]
    pts = sample_points(gt, 25, rng=0)
    exp = expand(image, pts)
    lines = ["# Suggestion latency at 1024 x 1024", "",
             "Coral image (reflect-padded to 1024 x 1024), 25 labelled points and their expansion; "
             f"median of {repeats} runs on the shared 2-core CPU (other jobs running).", "",
             "| call | median ms |", "|---|---:|"]
    for label, fn in (("suggest_points(n=1)", lambda: suggest_points(image, pts, exp, 1)),
                      ("suggest_points(n=10)", lambda: suggest_points(image, pts, exp, 10)),
                      ("acquisition_map", lambda: acquisition_map(image, pts, exp))):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        lines.append(f"| {label} | {1000 * float(np.median(times)):.1f} |")
    return "\n".join(lines) + "\n"


def _add(acc: dict, key, matrix: list) -> None:
    m = np.asarray(matrix, dtype=np.int64)
    if key not in acc:
        acc[key] = m
        return
    a = acc[key]
    size = max(a.shape[0], m.shape[0])
    grown = np.zeros((size, size), dtype=np.int64)
    grown[: a.shape[0], : a.shape[0]] += a
    grown[: m.shape[0], : m.shape[0]] += m
    acc[key] = grown


def main(argv: list[str] | None = None) -> int:
    from napari_sseg.core.metrics import segmentation_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--every", type=int, default=3, help="use every k-th image of a set")
    parser.add_argument("--start", type=int, default=0,
                        help="first image index (--every 2 --start 0 / 1: two disjoint halves)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--batches", type=int, nargs="+", default=[5, 5, 5, 5, 5, 10, 15],
                        help="suggestions per oracle round, in order (must reach each budget)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--options", type=json.loads, default={},
                        help="SuggestOptions overrides as JSON (for tuning)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--latency", action="store_true", help="measure latency at 1024 x 1024 only")
    args = parser.parse_args(argv)
    if args.latency:
        md = latency()
        sys.stdout.write(md)
        if not args.no_write:
            args.out.mkdir(parents=True, exist_ok=True)
            _write_atomic(args.out / "suggest_latency.md", md.encode())
        return 0

    tasks = []
    for name in args.sets:
        for i, (img, msk) in enumerate(list_images(name, args.every, args.start)):
            for seed in range(args.seeds):
                tasks.append({"set": name, "index": i, "image": str(img), "mask": str(msk),
                              "seed": seed, "budgets": args.budgets, "batches": args.batches, "strategies": args.strategies,
                              "options": args.options})
    t0 = time.perf_counter()
    acc: dict = {}
    lat_s, lat_n = {}, {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for task, res in zip(tasks, pool.map(run_image, tasks)):
            for key, mat in res["matrices"].items():
                strategy, b = key.split("/")
                _add(acc, (task["set"], strategy, int(b), task["seed"]), mat)
            lat_s[task["set"]] = lat_s.get(task["set"], 0.0) + res["suggest_s"]
            lat_n[task["set"]] = lat_n.get(task["set"], 0) + res["suggested"]
    wall = time.perf_counter() - t0

    table = {}  # (set, strategy, budget) -> (mean, std) mIoU in points
    for name in args.sets:
        for strategy in STRATEGIES:
            for b in args.budgets:
                vals = [100 * segmentation_scores(acc[(name, strategy, b, s)])["miou"]
                        for s in range(args.seeds) if (name, strategy, b, s) in acc]
                if vals:
                    table[(name, strategy, b)] = (float(np.mean(vals)), float(np.std(vals)))
    n_images = {name: len(list_images(name, args.every, args.start)) for name in args.sets}
    md = _markdown(args, table, lat_s, lat_n, n_images, wall)
    sys.stdout.write(md)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        _write_atomic(args.out / "suggest.md", md.encode())
        _plot(args, table, args.out / "suggest.png")
    return 0


def _markdown(args, table, lat_s, lat_n, n_images, wall) -> str:
    lines = ["# Suggested points vs random and grid", "",
             f"mIoU (%) of the default expansion, mean ± std over {args.seeds} seeds; one confusion "
             f"matrix per set, strategy, budget and seed. Suggest: rounds of {args.batches} points with the "
             "oracle, re-expanding after each batch (first batch without any point).",
             f"Images: every {args.every}-th image of each set (sorted by name) to keep the run short on the "
             "shared 2-core machine: " + ", ".join(f"{k} {v}" for k, v in n_images.items()) + ".",
             ""]
    if args.options:
        lines += [f"SuggestOptions overrides: `{json.dumps(args.options)}`", ""]
    header = "| set | points | random | grid | suggest | suggest - random | suggest - grid |"
    lines += [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for name in args.sets:
        for b in args.budgets:
            r, g, s = (table.get((name, k, b), (np.nan, np.nan)) for k in STRATEGIES)
            lines.append(f"| {name} | {b} | {r[0]:.1f} ± {r[1]:.1f} | {g[0]:.1f} ± {g[1]:.1f} | "
                         f"{s[0]:.1f} ± {s[1]:.1f} | {s[0] - r[0]:+.1f} | {s[0] - g[0]:+.1f} |")
    lines.append("")
    for b in args.budgets:
        have = [n for n in args.sets if all((n, k, b) in table for k in STRATEGIES)]
        dr = [table[(n, "suggest", b)][0] - table[(n, "random", b)][0] for n in have]
        dg = [table[(n, "suggest", b)][0] - table[(n, "grid", b)][0] for n in have]
        if dr:
            lines.append(f"- {b} points: suggest - random averages {np.mean(dr):+.1f} mIoU points over "
                         f"the sets (worst set {min(dr):+.1f}); suggest - grid worst set {min(dg):+.1f}.")
    lines += ["", "Suggestion latency (time in `suggest_points` per suggested point, after the "
              "expansion; shared 2-core CPU, two workers):", ""]
    for name in args.sets:
        if lat_n.get(name):
            lines.append(f"- {name}: {1000 * lat_s[name] / lat_n[name]:.1f} ms per point")
    lines += ["", f"Wall time of the run: {wall / 60:.1f} min.", ""]
    return "\n".join(lines)


def _plot(args, table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.sets), figsize=(4.2 * len(args.sets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], args.sets):
        for strategy, style in zip(STRATEGIES, ("o--", "s:", "^-")):
            ys = [table.get((name, strategy, b), (np.nan, np.nan)) for b in args.budgets]
            ax.errorbar(args.budgets, [y[0] for y in ys], yerr=[y[1] for y in ys], fmt=style,
                        label=strategy, capsize=3)
        ax.set_title(name)
        ax.set_xlabel("points per image")
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
