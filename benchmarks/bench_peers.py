"""napari-sseg's weight-free expansion side by side with napari-convpaint on the same points.

napari-convpaint (PyPI) is the pixel classifier napari users already have: it trains a classifier
(CatBoost by default) on per-pixel features at the annotated pixels. It runs here headless through
its Python API (``ConvpaintModel(fe_name="ilastik_2d")``, ``train``, ``segment``) with its
weight-free feature extractor, ilastik's filter set (Gaussian, LoG, gradient magnitude, DoG,
structure-tensor and Hessian eigenvalues at scales 0.3-10), and its default classifier and
settings. The annotations are the point pixels only (class + 1, 0 unlabelled).

convpaint's ilastik extractor imports ``ilastik.napari.filters`` (PyPI ``ilastik-napari``), which
calls the compiled ``fastfilters`` library; fastfilters is distributed through conda only and
cannot be installed here. The script therefore puts a small ``fastfilters`` module into the peer
venv that computes the same five filters with ``scipy.ndimage`` (same scales, same kernel
half-lengths ``(3 + order / 2) sigma``). Everything else (normalisation, padding, annotation
handling, CatBoost, post-processing) is convpaint's own code. The table says so.

Both tools see exactly the same points (``sample_points(gt, n, rng=[seed, n, hash(stem)])``, as
``bench_expansion.py`` draws them) on the same images, scored with the same
:class:`~napari_sseg.core.metrics.ConfusionMatrix` accumulated over all images and seeds of a set.

convpaint and its dependencies live in a separate venv the script creates
(``benchmarks/.venv-peers``, gitignored), which also sees the project venv's packages (torch,
napari, scikit-learn) through a ``.pth`` file, so nothing is added to the package. Per-image
results are cached under ``benchmarks/results/cache/peers/``.

Splits: images of each set sorted by name; ``dev`` = even positions (used for tuning), ``report``
= odd positions (held out; the default).

Usage::

    python benchmarks/bench_peers.py [--split report] [--sets ...] [--budgets 25 100]
        [--seeds 0 1 2] [--limit N | SET=N ...] [--methods ours convpaint] [--jobs 1]

Writes ``benchmarks/results/peers.md`` and ``benchmarks/results/peers.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cache" / "peers"
PEER_VENV = ROOT / "benchmarks" / ".venv-peers"
SETS = ("coral_eilat", "aerial_dubai", "em_isbi2012")
BUDGETS = (25, 100)
PEER_PACKAGES = ("napari-convpaint==1.2.0", "ilastik-napari==0.3.1", "catboost==1.2.10")
log = logging.getLogger("bench_peers")

FASTFILTERS_SHIM = '''"""Stand-in for fastfilters (conda-only, not installable here), written by bench_peers.py.

The five filters ilastik-napari calls, computed with scipy.ndimage; kernels cut at
(3 + order / 2) sigma like fastfilters; eigenvalues larger first.
"""
import numpy as np
from scipy import ndimage as ndi

STAND_IN = True


def _f(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def _t(order):
    return 3.0 + 0.5 * order


def gaussianSmoothing(X, sigma, window_size=0.0):
    return ndi.gaussian_filter(_f(X), sigma, truncate=_t(0))


def gaussianGradientMagnitude(X, sigma, window_size=0.0):
    return ndi.gaussian_gradient_magnitude(_f(X), sigma, truncate=_t(1))


def laplacianOfGaussian(X, scale, window_size=0.0):
    return ndi.gaussian_laplace(_f(X), scale, truncate=_t(2))


def _eig(a, b, c):
    half = (a + c) / 2
    root = np.sqrt(((a - c) / 2) ** 2 + b * b)
    return np.stack([half + root, half - root], axis=-1)


def hessianOfGaussianEigenvalues(X, scale, window_size=0.0):
    x = _f(X)
    return _eig(*(ndi.gaussian_filter(x, scale, order=o, truncate=_t(2))
                  for o in ((2, 0), (1, 1), (0, 2))))


def structureTensorEigenvalues(X, innerScale, outerScale, window_size=0.0):
    x = _f(X)
    gr = ndi.gaussian_filter(x, innerScale, order=(1, 0), truncate=_t(1))
    gc = ndi.gaussian_filter(x, innerScale, order=(0, 1), truncate=_t(1))
    return _eig(*(ndi.gaussian_filter(p, outerScale, truncate=_t(0))
                  for p in (gr * gr, gr * gc, gc * gc)))
'''
CONVPAINT_KEY = "convpaint-1.2.0-ilastik_2d-catboost-" + hashlib.sha1(
    FASTFILTERS_SHIM.encode()).hexdigest()[:8]


def ensure_peer_env() -> Path:
    """The peer venv's python, creating the venv and installing convpaint when missing."""
    py = PEER_VENV / "bin" / "python"
    site = PEER_VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages"
    if not py.exists():
        log.warning("creating %s and installing %s", PEER_VENV, " ".join(PEER_PACKAGES))
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        # the project venv's packages (torch, napari, scikit-learn, napari_sseg) stay visible
        main_site = next(p for p in sys.path if p.endswith("site-packages"))
        (site / "_sseg_main.pth").write_text(f"import site; site.addsitedir({main_site!r})\n")
    probe = subprocess.run([str(py), "-c", "import napari_convpaint, catboost, ilastik.napari"],
                           capture_output=True)
    if probe.returncode:
        subprocess.run([str(py), "-m", "pip", "install", *PEER_PACKAGES], check=True)
    (site / "fastfilters.py").write_text(FASTFILTERS_SHIM)
    return py


def set_limit(limits, set_name: str) -> int | None:
    """Most images of ``set_name`` from ``--limit`` entries (``N`` for every set, ``SET=N``)."""
    out = None
    for entry in limits or ():
        name, _, n = entry.rpartition("=")
        if name in ("", set_name):
            out = int(n)
    return out


def image_paths(set_name: str, split: str, limit: int | None) -> list[Path]:
    """Images of a set in name order: even positions for ``dev``, odd for ``report``."""
    paths = sorted(q for q in (DATA / set_name / "images").iterdir() if q.is_file())
    paths = paths[0::2] if split == "dev" else paths[1::2] if split == "report" else paths
    return paths[:limit] if limit else paths


def load(set_name: str, image_path: Path):
    from napari_sseg.io.images import read_image, read_label_image

    gt = read_label_image(DATA / set_name / "masks" / (image_path.stem + ".png"))
    return read_image(image_path), gt


def sample(gt, budget: int, seed: int, stem: str):
    """The benchmark's points: the same draw as ``bench_expansion.py``."""
    from napari_sseg.core.sampling import sample_points

    stem_hash = int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16)
    return sample_points(gt, budget, rng=[seed, budget, stem_hash])


def ours_key() -> str:
    """Cache key of our expansion: options and the sources it runs."""
    from dataclasses import asdict

    from napari_sseg.core.expand import ExpandOptions

    h = hashlib.sha1(json.dumps(asdict(ExpandOptions()), sort_keys=True).encode())
    for name in ("expand.py", "appearance.py", "features.py", "superpixels.py", "image.py"):
        h.update((ROOT / "src/napari_sseg/core" / name).read_bytes())
    return f"ours-{h.hexdigest()[:8]}"


def _cache_path(key, set_name, stem, budget, seed) -> Path:
    return CACHE / set_name / key / f"{stem}_n{budget}_s{seed}.json"


def _convpaint_predict(model_cls, image, points):
    """Train convpaint on the point pixels of ``image`` and segment it (class ids)."""
    rows, cols = points.pixel_indices()
    classes = np.unique(points.labels)
    ann = np.zeros(image.shape[:2], dtype=np.uint16)
    ann[rows, cols] = np.searchsorted(classes, points.labels) + 1
    model = model_cls(fe_name="ilastik_2d")
    if image.ndim == 3:  # channel-last RGB -> convpaint's channel-first, as its widget does
        model.set_param("channel_mode", "rgb" if image.shape[2] == 3 else "multi",
                        ignore_warnings=True)
        image = np.moveaxis(image, -1, 0)
    model.train(image, ann)
    seg = np.asarray(model.segment(image))
    return classes[np.clip(seg.astype(np.int64) - 1, 0, classes.size - 1)]


def run_image(args) -> list:
    """Every budget and seed of one image with one method; per-run records (cached)."""
    method, key, set_name, image_path, budgets, seeds = args
    from napari_sseg.core.metrics import ConfusionMatrix
    from napari_sseg.io.atomic import atomic_write_json

    if method == "convpaint":
        import contextlib
        import io

        from napari_convpaint.convpaint_model import ConvpaintModel
    else:
        from napari_sseg.core.expand import expand
    stem = Path(image_path).stem
    image = gt = None
    out = []
    for budget in budgets:
        for seed in seeds:
            path = _cache_path(key, set_name, stem, budget, seed)
            if path.exists():
                out.append(((set_name, budget, seed, method), json.loads(path.read_text())))
                continue
            if image is None:
                image, gt = load(set_name, Path(image_path))
            points = sample(gt, budget, seed, stem)
            t0, w0 = time.process_time(), time.perf_counter()
            if method == "convpaint":
                # convpaint prints CatBoost's iterations; keep the log readable
                with contextlib.redirect_stdout(io.StringIO()):
                    pred = _convpaint_predict(ConvpaintModel, image, points)
            else:
                pred = expand(image, points).labels
            cpu, wall = time.process_time() - t0, time.perf_counter() - w0
            cm = ConfusionMatrix()
            cm.update(gt, pred)
            rec = {"matrix": cm.matrix.tolist(), "cpu_s": cpu, "wall_s": wall,
                   "megapixels": gt.size / 1e6}
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, rec)
            out.append(((set_name, budget, seed, method), rec))
    return out


def _tasks(method, key, args):
    return [(method, key, s, str(p), args.budgets, args.seeds)
            for s in args.sets for p in image_paths(s, args.split, set_limit(args.limit, s))]


def _run_convpaint(args) -> None:
    """Fill convpaint's cache by running this script as a worker inside the peer venv."""
    py = ensure_peer_env()
    cmd = [str(py), str(Path(__file__).resolve()), "--worker", "--split", args.split,
           "--sets", *args.sets, "--budgets", *map(str, args.budgets),
           "--seeds", *map(str, args.seeds), "--jobs", str(args.jobs)]
    if args.limit:
        cmd += ["--limit", *args.limit]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    subprocess.run(cmd, check=True, env=env)


def _map(fn, tasks, jobs):
    if jobs <= 1:
        return [r for t in tasks for r in fn(t)]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs) as pool:
        return [r for chunk in pool.map(fn, tasks) for r in chunk]


def collect(args, keys) -> dict:
    """(set, budget, method) -> summed confusion matrix, CPU and wall seconds, image count."""
    table: dict = {}
    for method, key in keys.items():
        for s in args.sets:
            for p in image_paths(s, args.split, set_limit(args.limit, s)):
                for b in args.budgets:
                    for seed in args.seeds:
                        path = _cache_path(key, s, p.stem, b, seed)
                        # only runs every tool has finished, so the tools see the same runs
                        if not all(_cache_path(k, s, p.stem, b, seed).exists()
                                   for k in keys.values()):
                            continue
                        rec = json.loads(path.read_text())
                        t = table.setdefault((s, b, method), {"matrix": 0, "cpu": [], "wall": []})
                        t["matrix"] = _add_grown(t["matrix"], np.asarray(rec["matrix"]))
                        t["cpu"].append(rec["cpu_s"])
                        t["wall"].append(rec.get("wall_s", rec["cpu_s"]))
    return table


def _add_grown(total, mat):
    """Sum of two square confusion matrices of possibly different sizes (the larger kept)."""
    if np.isscalar(total):
        return mat.astype(np.float64)
    k = max(total.shape[0], mat.shape[0])
    out = np.zeros((k, k))
    out[: total.shape[0], : total.shape[0]] += total
    out[: mat.shape[0], : mat.shape[0]] += mat
    return out


def report(args, keys) -> str:
    from napari_sseg.core.metrics import segmentation_scores

    table = collect(args, keys)
    n_img = {s: len(image_paths(s, args.split, set_limit(args.limit, s))) for s in args.sets}
    lines = [
        "# napari-sseg against napari-convpaint, same points",
        "",
        f"Split: **{args.split}** (images sorted by name; dev = even positions, used for "
        "tuning; report = odd positions, held out). Seeds "
        f"{list(args.seeds)}; random points from `sample_points` as in `bench_expansion.py`, "
        "the same for both tools; one confusion matrix per set, budget and tool over all "
        "images and seeds (255 ignored; mIoU over the classes present in the ground truth)."
        + (f" Image limits (the first N of the split): {' '.join(args.limit)}."
           if args.limit else ""),
        "",
        "**convpaint** = napari-convpaint 1.2.0 through its Python API, `ConvpaintModel("
        "fe_name=\"ilastik_2d\")` (its weight-free ilastik filter set) with its default "
        "classifier (CatBoost, 100 iterations, depth 5) and default settings; annotations = "
        "the point pixels only. **Stand-in part, loudly:** convpaint's ilastik extractor "
        "calls the compiled `fastfilters` (conda-only, not installable here); the benchmark "
        "installs a `fastfilters` module that computes the same filters with scipy.ndimage "
        "(`FASTFILTERS_SHIM` in the script). Everything else is convpaint's own code.",
        "**ours** = `napari_sseg.core.expand.expand` with default options (weight-free).",
        "`CPU s` is CPU seconds per image (all threads; CatBoost uses several, ours one), "
        "`wall s` wall seconds per image, on a shared 2-core machine (noisy). Generated by "
        "`benchmarks/bench_peers.py`.",
        "",
        "| set | images | points | ours mIoU | convpaint mIoU | ours - convpaint | "
        "ours CPU s | convpaint CPU s | ours wall s | convpaint wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    plot = {}
    for s in args.sets:
        for b in args.budgets:
            row = {}
            for m in keys:
                t = table.get((s, b, m))
                if t is None:
                    continue
                runs = len(t["cpu"])
                row[m] = (100 * segmentation_scores(t["matrix"])["miou"],
                          float(np.mean(t["cpu"])), float(np.mean(t["wall"])), runs)
            if not row:
                continue
            full = n_img[s] * len(args.seeds)

            def cell(m, i, fmt="{:.1f}"):
                if m not in row:
                    return "-"
                v = fmt.format(row[m][i])
                return v if row[m][3] == full else f"{v} ({row[m][3]}/{full} runs)"

            diff = (f"{row['ours'][0] - row['convpaint'][0]:+.1f}"
                    if "ours" in row and "convpaint" in row else "-")
            lines.append(f"| {s} | {n_img[s]} | {b} | {cell('ours', 0)} | "
                         f"{cell('convpaint', 0)} | {diff} | {cell('ours', 1, '{:.2f}')} | "
                         f"{cell('convpaint', 1, '{:.2f}')} | {cell('ours', 2, '{:.2f}')} | "
                         f"{cell('convpaint', 2, '{:.2f}')} |")
            plot[(s, b)] = row
    lines.append("")
    _plot(plot, args, keys)
    return "\n".join(lines)


def _plot(plot, args, keys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{s}\n{b} pts" for (s, b) in plot]
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(keys))
    for i, m in enumerate(keys):
        miou = [plot[k].get(m, (np.nan,) * 4)[0] for k in plot]
        secs = [plot[k].get(m, (np.nan,) * 4)[1] for k in plot]
        axes[0].bar(x + i * width, miou, width, label=m)
        axes[1].bar(x + i * width, secs, width, label=m)
    for ax, title in zip(axes, ("mIoU (%)", "CPU seconds per image")):
        ax.set_xticks(x + width * (len(keys) - 1) / 2, labels, fontsize=7)
        ax.set_title(f"{title}, {args.split} split")
        ax.legend()
    axes[1].set_yscale("log")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / ".peers.png.tmp"
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, RESULTS / "peers.png")


def speed(repeats: int = 5) -> str:
    """CPU seconds of one 1000 x 1000 expansion from 100 points, by part, forest on and off.

    A crop of the first coral image; each part is timed by wrapping the functions
    ``iter_expand`` calls (``time.process_time``, one thread). The first call also pays the
    import of scikit-learn's ensemble module, measured alone in a fresh process.
    """
    import napari_sseg.core.appearance as appearance
    import napari_sseg.core.expand as ex

    parts: dict = {}

    def timed(mod, name, label=None):
        fn = getattr(mod, name)

        def wrapper(*a, **k):
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                key = label(a) if label else name
                parts[key] = parts.get(key, 0.0) + time.process_time() - t
        setattr(mod, name, wrapper)

    for name in ("pixel_features", "filter_bank", "fit_lda", "fit_forest", "_seeded_layer",
                 "_assemble"):
        timed(ex, name)
    timed(appearance.ForestModel, "log_proba",
          lambda a: "forest prediction, every pixel" if a[1].ndim == 3 else
          "forest prediction, held-out points")
    image_path = sorted((DATA / "coral_eilat" / "images").iterdir())[0]
    image, gt = load("coral_eilat", image_path)
    image, gt = image[:1000, :1000], gt[:1000, :1000]
    points = sample(gt, 100, 0, image_path.stem)
    imp = subprocess.run([sys.executable, "-c", "import time; t = time.process_time(); "
                          "import sklearn.ensemble; print(time.process_time() - t)"],
                         capture_output=True, text=True)
    lines = ["# 1 megapixel from 100 points: CPU seconds by part", "",
             "A 1000 x 1000 crop of the first coral image, 100 random points, one thread, "
             f"{repeats} calls in one process after a warm-up call (median; min-max). "
             "Parts are the functions `iter_expand` calls; 'other' is the rest (graph, "
             "cross-validation scoring, smoothing decision, ensemble maps). Shared 2-core "
             "machine, noisy. Generated by `benchmarks/bench_peers.py --speed`.",
             f"Importing `sklearn.ensemble` (first call in a process only): "
             f"{float(imp.stdout or 'nan'):.2f} CPU s.", ""]
    for label, opts in (("with the forest expert (default)", ex.ExpandOptions()),
                        ("without it (forest_trees=0)", ex.ExpandOptions(forest_trees=0))):
        ex.expand(image, points, options=opts)
        runs = []
        for _ in range(repeats):
            parts.clear()
            t = time.process_time()
            res = ex.expand(image, points, options=opts)
            runs.append((time.process_time() - t, dict(parts)))
        totals = sorted(r[0] for r in runs)
        lines += [f"## {label}", "",
                  f"Total {np.median(totals):.2f} s ({totals[0]:.2f}-{totals[-1]:.2f}); "
                  f"chosen combination {res.info['weights'][0]}.", "",
                  "| part | CPU s (median) |", "|---|---:|"]
        keys = sorted({k for _, p in runs for k in p})
        for k in keys:
            lines.append(f"| {k} | {np.median([p.get(k, 0.0) for _, p in runs]):.3f} |")
        other = np.median([tot - sum(p.values()) for tot, p in runs])
        lines += [f"| other | {other:.3f} |", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("dev", "report", "all"), default="report")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--limit", nargs="+", default=None, metavar="N|SET=N",
                    help="at most N images per set (SET=N: of that set only, the first N)")
    ap.add_argument("--methods", nargs="+", default=["ours", "convpaint"])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--no-report", action="store_true", help="fill the cache only")
    ap.add_argument("--report-only", action="store_true",
                    help="write the table from the cached runs, run nothing")
    ap.add_argument("--speed", action="store_true",
                    help="time the 1-megapixel, 100-point expansion by part instead")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from napari_sseg.io.atomic import atomic_write_text

    if args.speed:
        text = speed()
        atomic_write_text(RESULTS / "peers_speed.md", text)
        log.info("%s", text)
        return 0

    if args.worker:  # inside the peer venv: convpaint only
        _map(run_image, _tasks("convpaint", CONVPAINT_KEY, args), args.jobs)
        return 0
    keys = {m: (ours_key() if m == "ours" else CONVPAINT_KEY) for m in args.methods}
    if "ours" in keys and not args.report_only:
        _map(run_image, _tasks("ours", keys["ours"], args), args.jobs)
    if "convpaint" in keys and not args.report_only:
        _run_convpaint(args)
    if args.no_report:
        return 0
    text = report(args, {m: keys[m] for m in ("ours", "convpaint") if m in keys})
    out = RESULTS / ("peers.md" if args.split == "report" else f"peers_{args.split}.md")
    atomic_write_text(out, text)
    log.info("%s", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
