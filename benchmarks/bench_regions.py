"""Region hierarchy against SLIC and Felzenszwalb: ASA, boundary recall, counts and speed.

For each set of ``../shared/data`` and K in (100, 300, 1000), the hierarchy of
:func:`napari_sseg.core.regions.region_hierarchy` (default options) is cut at K regions and
compared with scikit-image's SLIC (compactness 10 and 20 on the CIELAB scale; scikit-image
rescales a grey image to [0, 1] first, so both are nearly regular grids there) and Felzenszwalb (sigma 0.8, min_size
area / (10 K), scale searched), each tuned to the same count (n_segments or scale adjusted
until the count is within 7 % of K). Measures per image, then averaged over the set's images:

* ASA, achievable segmentation accuracy: each region takes its majority ground-truth class
  (255 ignored); ``natural_bsds500`` uses annotator 0's regions (``masks/``) as the classes;
* BR, boundary recall: the share of ground-truth boundary pixels within 2 pixels of a region
  boundary (BSDS: annotator 0; ``--all-annotators`` averages the five);
* the number of regions (the bar: K +- 15 %).

Images are split by their index in each set's sorted listing: even indices are the
development split the defaults were tuned on, odd ones the report split (``--split``).
Baseline results are cached per image (``--cache``), so reruns only redo the hierarchy.

``--timing`` also measures building and cutting at 1 and 10 megapixels (a coral photo tiled
and resized) and one cut plus the boundary overlay at 1 megapixel.

Usage::

    nice -n 5 python benchmarks/bench_regions.py --split report [--max-images 4] [--timing]

Writes ``benchmarks/results/regions.md`` and ``benchmarks/results/regions.png``
(``--tag`` appends a suffix to both names).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SETS = ("coral_eilat", "aerial_dubai", "em_isbi2012", "natural_bsds500")
KS = (100, 300, 1000)


def image_names(set_name: str, split: str, max_images: int | None) -> list[str]:
    """Sorted image file names of one split (even indices: dev, odd: report), spread evenly."""
    names = sorted(p.name for p in (DATA / set_name / "images").iterdir())
    names = names[(0 if split == "dev" else 1)::2]
    if max_images and len(names) > max_images:
        pick = np.linspace(0, len(names) - 1, max_images).round().astype(int)
        names = [names[i] for i in pick]
    return names


def load(set_name: str, name: str):
    from napari_sseg.io import read_image, read_label_image

    stem = Path(name).stem
    img = read_image(DATA / set_name / "images" / name)
    gt = read_label_image(DATA / set_name / "masks" / f"{stem}.png")
    others = []
    folder = DATA / set_name / "masks_all_annotators"
    if folder.is_dir():
        others = [read_label_image(p) for p in sorted(folder.glob(f"{stem}-*.png"))]
    return img, gt, others


def n_regions(seg: np.ndarray) -> int:
    return int(np.unique(seg).size)


def slic_tuned(img: np.ndarray, k: int, compactness: float) -> np.ndarray:
    """SLIC with n_segments adjusted until the count is within 7 % of ``k`` (5 tries)."""
    from skimage.segmentation import slic

    grey = img.ndim == 2
    x = img.astype(np.float32) / np.float32(255 if img.dtype == np.uint8 else max(img.max(), 1))
    n, best = k, None
    for _ in range(5):
        seg = slic(x, n_segments=n, compactness=compactness, channel_axis=None if grey else -1,
                   convert2lab=not grey, start_label=0, enforce_connectivity=True)
        got = n_regions(seg)
        if best is None or abs(got - k) < abs(best[1] - k):
            best = (seg, got)
        if abs(got - k) <= 0.07 * k:
            break
        n = max(2, int(round(n * k / got)))
    return best[0]


def felzenszwalb_tuned(img: np.ndarray, k: int) -> np.ndarray:
    """Felzenszwalb with its scale searched (log-secant, 8 tries) for ``k`` regions."""
    from skimage.segmentation import felzenszwalb

    area = img.shape[0] * img.shape[1]
    min_size = max(5, area // (10 * k))
    axis = None if img.ndim == 2 else -1
    tried = []
    scale = 300.0
    best = None
    for _ in range(8):
        seg = felzenszwalb(img, scale=scale, sigma=0.8, min_size=min_size, channel_axis=axis)
        got = n_regions(seg)
        tried.append((np.log(scale), np.log(got)))
        if best is None or abs(got - k) < abs(best[1] - k):
            best = (seg, got)
        if abs(got - k) <= 0.07 * k:
            break
        if len(tried) >= 2 and tried[-1][1] != tried[-2][1]:
            (x0, y0), (x1, y1) = tried[-2], tried[-1]
            slope = min(-0.05, (y1 - y0) / (x1 - x0))
        else:
            slope = -0.7
        step = float(np.clip((np.log(k) - tried[-1][1]) / slope, -3, 3))
        scale = float(np.exp(tried[-1][0] + step))
    return best[0]


def scores(seg, gt, others, all_annotators: bool) -> dict:
    from napari_sseg.core.regions import achievable_accuracy, boundary_recall

    truths = others if (all_annotators and others) else [gt]
    return {"asa": achievable_accuracy(seg, gt),
            "br": float(np.mean([boundary_recall(seg, t) for t in truths])),
            "n": n_regions(seg)}


def baselines(set_name, name, img, gt, others, cache: Path, all_annotators: bool) -> dict:
    path = cache / f"{set_name}__{name}__{int(all_annotators)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = {}
    for k in KS:
        for method, fn in (("SLIC c10", lambda: slic_tuned(img, k, 10)),
                           ("SLIC c20", lambda: slic_tuned(img, k, 20)),
                           ("Felzenszwalb", lambda: felzenszwalb_tuned(img, k))):
            t = time.process_time()
            seg = fn()
            out[f"{method}|{k}"] = {**scores(seg, gt, others, all_annotators),
                                    "cpu_s": time.process_time() - t}
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def ours(img, gt, others, all_annotators: bool, options: dict) -> dict:
    from napari_sseg.core.regions import cut, region_hierarchy

    t = time.process_time()
    h = region_hierarchy(img, **options)
    out = {"build_cpu_s": time.process_time() - t}
    for k in KS:
        seg = cut(h, n_regions=k)
        out[f"hierarchy|{k}"] = scores(seg, gt, others, all_annotators)
    return out


def timing(rows: list[str]) -> None:
    """Build and cut times at 1 and 10 MP, and one cut + boundary overlay at 1 MP."""
    from skimage.transform import resize

    from napari_sseg.core.regions import cut, region_boundaries, region_hierarchy
    from napari_sseg.io import read_image

    base = read_image(DATA / "coral_eilat" / "images" / "LFT_0029_q01.png")
    rows += ["", "## Speed (one process; the machine's 2 cores were shared by about 30 processes, "
             "so wall times are inflated: CPU seconds are the steadier measure)", "",
             "| image | work factor | build CPU s | cut K=300 CPU ms | cut + boundaries CPU ms "
             "| cut + boundaries wall ms |", "|---|---:|---:|---:|---:|---:|"]
    for side in (1000, 3162):
        img = (resize(base, (side, side), order=1, preserve_range=True, anti_aliasing=False)
               .astype(np.uint8))
        t = time.process_time()
        h = region_hierarchy(img)
        build = time.process_time() - t
        cut(h, n_regions=300)
        reps = []
        for k in (300, 310, 320, 330, 340):
            t, tw = time.process_time(), time.perf_counter()
            lab = cut(h, n_regions=k)
            mid = time.process_time()
            region_boundaries(lab)
            reps.append((mid - t, time.process_time() - t, time.perf_counter() - tw))
        c1, c2, c3 = (1000 * float(np.median([r[i] for r in reps])) for i in range(3))
        rows.append(f"| {side} x {side} ({side * side / 1e6:.0f} MP) | {h.factor} | {build:.1f} "
                    f"| {c1:.0f} | {c2:.0f} | {c3:.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--split", choices=("dev", "report"), default="report")
    ap.add_argument("--max-images", type=int, default=None,
                    help="at most this many images per set, spread over the split")
    ap.add_argument("--all-annotators", action="store_true",
                    help="BSDS boundary recall averaged over the five annotators")
    ap.add_argument("--options", default="{}", help="JSON options for region_hierarchy")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/sseg_bench_regions_cache"))
    ap.add_argument("--cached-only", action="store_true",
                    help="only the images whose baselines are already in --cache")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--timing-only", action="store_true",
                    help="only the speed table, written to regions_speed<tag>.md")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    options = json.loads(args.options)
    if args.timing_only:
        rows = ["# Region hierarchy: speed", "", "Generated by `benchmarks/bench_regions.py "
                "--timing-only`; default options."]
        timing(rows)
        (RESULTS / f"regions_speed{args.tag}.md").write_text("\n".join(rows) + "\n")
        print("\n".join(rows))
        return 0

    per = {}  # (set, method, k) -> list of per-image dicts
    used = {}
    for set_name in args.sets:
        for name in image_names(set_name, args.split, args.max_images):
            cached = args.cache / f"{set_name}__{name}__{int(args.all_annotators)}.json"
            if args.cached_only and not cached.is_file():
                continue
            img, gt, others = load(set_name, name)
            used.setdefault(set_name, []).append(Path(name).stem)
            res = baselines(set_name, name, img, gt, others, args.cache, args.all_annotators)
            res.update(ours(img, gt, others, args.all_annotators, options))
            for key, val in res.items():
                if "|" in key:
                    method, k = key.split("|")
                    per.setdefault((set_name, method, int(k)), []).append(val)
            print(set_name, name, f"build {res['build_cpu_s']:.1f} s", flush=True)

    methods = ("hierarchy", "SLIC c10", "SLIC c20", "Felzenszwalb")
    rows = [f"# Region hierarchy against SLIC and Felzenszwalb ({args.split} split)", "",
            "Generated by `benchmarks/bench_regions.py "
            + " ".join(a for a in __import__("sys").argv[1:]) + "`. ASA and boundary recall "
            "(BR, 2 px) in %, averaged over images; n: mean number of regions (min-max). "
            "Best baseline: the better of the three by mean ASA on the set. "
            f"Hierarchy options: {options or 'defaults'}.", "",
            "| set (images) | K | hierarchy ASA | SLIC c10 | SLIC c20 | Felzenszwalb | "
            "best baseline | hierarchy - best | hierarchy BR | best-ASA baseline BR | "
            "hierarchy n |", "|---|---:|" + "---:|" * 9]
    diffs = {}
    for set_name in args.sets:
        for k in KS:
            if (set_name, "hierarchy", k) not in per:
                continue
            asa = {m: 100 * np.mean([v["asa"] for v in per[(set_name, m, k)]]) for m in methods}
            br = {m: 100 * np.mean([v["br"] for v in per[(set_name, m, k)]]) for m in methods}
            best = max(methods[1:], key=lambda m: asa[m])
            d = asa["hierarchy"] - asa[best]
            diffs.setdefault(k, []).append(d)
            ns = [v["n"] for v in per[(set_name, "hierarchy", k)]]
            n_img = len(ns)
            rows.append(
                f"| {set_name} ({n_img}) | {k} | {asa['hierarchy']:.2f} | {asa['SLIC c10']:.2f} | "
                f"{asa['SLIC c20']:.2f} | {asa['Felzenszwalb']:.2f} | {best} | {d:+.2f} | "
                f"{br['hierarchy']:.1f} | {br[best]:.1f} | {np.mean(ns):.0f} "
                f"({min(ns)}-{max(ns)}) |")
    rows += ["", "Mean over sets of hierarchy - best baseline (ASA points): "
             + ", ".join(f"K={k}: {np.mean(v):+.2f} (worst set {min(v):+.2f})"
                         for k, v in diffs.items()) + "."]
    counts = [abs(v["n"] - k) / k for (s, m, k), vals in per.items() if m == "hierarchy"
              for v in vals]
    rows += ["", "Images: " + "; ".join(f"{s} {', '.join(v)}" for s, v in used.items()) + ".",
             "Grey images (EM) give SLIC c10 and c20 the same result: scikit-image rescales a grey "
             "image's range before segmenting, so both are nearly regular grids there."]
    if counts:
        rows.append(f"Largest relative deviation of a hierarchy cut's count from K: "
                    f"{100 * max(counts):.1f} %.")
    if args.timing:
        timing(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"regions{args.tag}.md"
    out.write_text("\n".join(rows) + "\n")
    plot(per, args.sets, methods, RESULTS / f"regions{args.tag}.png")
    print("\n".join(rows))
    return 0


def plot(per, sets, methods, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in sets if any((s, "hierarchy", k) in per for k in KS)]
    if not sets:
        return
    fig, axes = plt.subplots(2, len(sets), figsize=(3.6 * len(sets), 6), squeeze=False)
    for j, s in enumerate(sets):
        for i, metric in enumerate(("asa", "br")):
            ax = axes[i, j]
            for m in methods:
                ks = [k for k in KS if (s, m, k) in per]
                ax.plot(ks, [100 * np.mean([v[metric] for v in per[(s, m, k)]]) for k in ks],
                        marker="o", label=m, lw=2.5 if m == "hierarchy" else 1.2)
            ax.set_xscale("log")
            ax.set_title(s, fontsize=9)
            ax.set_xlabel("regions K")
            ax.set_ylabel("ASA %" if metric == "asa" else "boundary recall %")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
