"""Benchmark: corrections that spread (refined) against corrections painted in alone (manual).

For every labelled set in ``../shared/data`` (``coral_eilat``, ``aerial_dubai``, ``em_isbi2012``)
and a report split of its images (see ``--split``), 25 random points per image are expanded
(weight-free expansion, default options), then ``--rounds`` correction rounds follow
(:func:`napari_sseg.core.simulate.iter_simulate_corrections`): the simulated user paints a disc
of radius ``--radius`` with the true class at the innermost pixel of the largest wrong region of
the current mask. Two arms, each following its own errors:

- *refined*: a new expansion of the same points with all the corrections so far;
- *manual*: the previous mask with only the disc painted in.

Scores come from one confusion matrix per set, arm and round (mIoU over the classes in the ground
truth, 255 ignored). Also recorded: the share of painted pixels that kept their class in the
refined arm (must be 100 % in every round), and the cost of a re-expansion with corrections
against the plain expansion from the points (the same image, in the same process, interleaved).

The design of the corrections (which experts they feed) was chosen on the development images
(``em_isbi2012`` 00 and 05, ``coral_eilat`` LFT_0029_q01, ``aerial_dubai`` sorted index 3 and
20); the default report split (``--split report``) leaves them out: even sorted indices of coral
and EM from 2 (EM) or 0 (coral), and every 4th aerial tile from index 2.

Usage::

    nice -n 5 python benchmarks/bench_corrections.py [--sets em_isbi2012 ...] [--limit 4]

Writes ``benchmarks/results/corrections.md``, ``benchmarks/results/corrections.png`` and the raw
numbers in ``benchmarks/results/corrections.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_SSEG_DATA", ROOT.parent / "shared" / "data"))
SETS = ("coral_eilat", "aerial_dubai", "em_isbi2012")
RESULTS = ROOT / "benchmarks" / "results"


def report_split(name: str, images: list[Path]) -> list[Path]:
    """The images of ``name`` that the corrections were not developed on."""
    if name == "aerial_dubai":
        return images[2::4]
    if name == "em_isbi2012":
        return images[2::2]
    return images[0::2]


def add_matrix(total: np.ndarray | None, m: np.ndarray) -> np.ndarray:
    """Sum of two confusion matrices of possibly different sizes."""
    if total is None:
        return m.copy()
    n = max(total.shape[0], m.shape[0])
    out = np.zeros((n, n), dtype=np.int64)
    out[: total.shape[0], : total.shape[0]] += total
    out[: m.shape[0], : m.shape[0]] += m
    return out


def run_set(name: str, args) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from napari_sseg.core.expand import expand
    from napari_sseg.core.metrics import segmentation_scores
    from napari_sseg.core.progress import run_generator
    from napari_sseg.core.sampling import sample_points
    from napari_sseg.core.simulate import iter_simulate_corrections
    from napari_sseg.io import read_image, read_label_image

    images = sorted(p for p in (DATA / name / "images").iterdir() if not p.name.startswith("."))
    chosen = report_split(name, images) if args.split == "report" else images
    chosen = chosen[: args.limit] if args.limit else chosen
    refined = [None] * (args.rounds + 1)
    manual = [None] * (args.rounds + 1)
    kept_min = 1.0
    plain_s, corr_s, per_image = [], [], []
    for i, path in enumerate(chosen):
        image = read_image(path)
        gt = read_label_image(DATA / name / "masks" / f"{path.stem}.png")
        pts = sample_points(gt, args.points, rng=np.random.default_rng([args.seed, i]))
        t0 = time.process_time()
        res = run_generator(iter_simulate_corrections(image, gt, pts, args.rounds,
                                                      radius=args.radius))
        for k in range(args.rounds + 1):
            refined[k] = add_matrix(refined[k], res.refined[k])
            manual[k] = add_matrix(manual[k], res.manual[k])
        kept_min = min(kept_min, min(res.kept))
        # cost: plain expansion and expansion with the final corrections, interleaved (CPU time)
        tp, tc = [], []
        for _ in range(args.timing_repeats):
            t = time.process_time()
            expand(image, pts)
            tp.append(time.process_time() - t)
            t = time.process_time()
            expand(image, pts, corrections=res.corrections)
            tc.append(time.process_time() - t)
        plain_s.append(min(tp))
        corr_s.append(min(tc))
        per_image.append({
            "image": path.name,
            "refined": [segmentation_scores(m)["miou"] for m in res.refined],
            "manual": [segmentation_scores(m)["miou"] for m in res.manual],
            "kept": res.kept, "plain_cpu_s": min(tp), "corrections_cpu_s": min(tc),
            "painted_pixels": int((res.corrections != 255).sum()),
            "seconds": round(time.process_time() - t0, 2),
        })
        print(f"{name} {path.name}: refined {per_image[-1]['refined'][-1]:.3f} manual "
              f"{per_image[-1]['manual'][-1]:.3f} cost {min(tc) / min(tp):.2f}x", flush=True)
    return {
        "images": [p.name for p in chosen],
        "refined": [segmentation_scores(m)["miou"] for m in refined],
        "manual": [segmentation_scores(m)["miou"] for m in manual],
        "kept_min": kept_min,
        "plain_cpu_s": float(np.sum(plain_s)),
        "corrections_cpu_s": float(np.sum(corr_s)),
        "per_image": per_image,
    }


def write_report(results: dict, args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    rounds = args.rounds
    lines = [
        "# Corrections: refined (re-expanded) against manual (painted only)",
        "",
        (f"{args.points} random points per image, then {rounds} rounds; each round the oracle "
         f"paints a disc of radius {args.radius} px with the true class at the innermost pixel "
         "of the largest wrong region of each arm's own mask. mIoU (%) from one confusion "
         "matrix per set, arm and round. Written by `benchmarks/bench_corrections.py` "
         f"(split `{args.split}`, seed {args.seed})."),
        "",
        (f"| set | images | round 0 | manual r{rounds} | refined r{rounds} | refined - manual | "
         "painted pixels kept (min) | CPU s plain / with corrections (ratio) |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    gains = []
    for name, r in results.items():
        gain = 100 * (r["refined"][-1] - r["manual"][-1])
        gains.append(gain)
        ratio = r["corrections_cpu_s"] / max(r["plain_cpu_s"], 1e-9)
        lines.append(
            f"| {name} | {len(r['images'])} | {100 * r['refined'][0]:.1f} | "
            f"{100 * r['manual'][-1]:.1f} | {100 * r['refined'][-1]:.1f} | {gain:+.1f} | "
            f"{100 * r['kept_min']:.0f} % | {r['plain_cpu_s']:.1f} / "
            f"{r['corrections_cpu_s']:.1f} ({ratio:.2f}x) |")
    lines += ["", (f"Mean over sets of refined - manual after {rounds} rounds: "
                   f"**{np.mean(gains):+.1f} mIoU**."), "", "## Per round (mIoU %, manual / refined)",
              "", "| round | " + " | ".join(results) + " |",
              "|---|" + "---|" * len(results)]
    for k in range(rounds + 1):
        cells = [f"{100 * r['manual'][k]:.1f} / {100 * r['refined'][k]:.1f}"
                 for r in results.values()]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "Images: " + "; ".join(f"{n}: {', '.join(r['images'])}"
                                         for n, r in results.items()), ""]
    (RESULTS / "corrections.md").write_text("\n".join(lines))
    (RESULTS / "corrections.json").write_text(json.dumps(results, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        x = np.arange(rounds + 1)
        ax.plot(x, 100 * np.asarray(r["refined"]), "o-", label="refined (re-expanded)")
        ax.plot(x, 100 * np.asarray(r["manual"]), "s--", label="manual (disc only)")
        ax.set_title(f"{name} ({len(r['images'])} images)")
        ax.set_xlabel("correction round")
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "corrections.png", dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=list(SETS))
    p.add_argument("--points", type=int, default=25)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--radius", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="most images per set (0: the whole split)")
    p.add_argument("--split", choices=("report", "all"), default="report")
    p.add_argument("--timing-repeats", type=int, default=1)
    p.add_argument("--merge", action="store_true",
                   help="keep the other sets of an earlier corrections.json (same settings)")
    args = p.parse_args(argv)
    results = {}
    if args.merge and (RESULTS / "corrections.json").is_file():
        results = json.loads((RESULTS / "corrections.json").read_text())
    for name in args.sets:
        results[name] = run_set(name, args)
        write_report(results, args)


if __name__ == "__main__":
    main()
