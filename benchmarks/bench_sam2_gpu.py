"""Benchmark: the hybrid SAM2 + maskSLIC expansion on a CUDA GPU, tiny and large.

The GPU counterpart of ``bench_sam2.py``: SAM2.1 models with random weights (compute does not
depend on the weights' values) on one CUDA device with bf16 autocast, a real aerial tile cropped
to 512 x 512 and 1024 x 1024, 25 and 100 points drawn from its ground truth (seed 0), expanded
with :func:`napari_sseg.core.fusion.iter_hybrid_expand` (``min_iou=0`` so that masks are kept).
Per row: the embedding (median of the repeats, synchronised), then the median run's decoding
(prompt encoder and mask decoder on the GPU, choice rule and upsampling on the CPU while the
next batch decodes), conflicts, maskSLIC fill (CPU) and the total after the embedding. Also
timed: ``SAM2ImagePredictor.predict`` per point (three full-resolution masks) for the same 25
points, and the agreement of our regrouped decoder with SAM2's own mask decoder under bf16
autocast (largest logit difference, share of low-resolution cells whose sign differs).

Usage::

    python benchmarks/bench_sam2_gpu.py [--data DIR] [--models tiny large] [--repeats 3]
        [--out benchmarks/results/sam2_gpu.md]

``--data`` holds ``tile5_image_part_001.jpg`` and its mask (``../shared/data/aerial_dubai/
images`` and ``masks`` by default; a folder with the image and ``*_mask.png`` also works).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_sam2 import _points, median_run  # the same points and runs as on the CPU

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "aerial_dubai"
RESULTS = REPO / "benchmarks" / "results" / "sam2_gpu.md"
STEM = "tile5_image_part_001"


def _load_tile(data: Path):
    from PIL import Image

    flat = sorted(data.glob(f"{STEM}.*"))
    if flat:
        img, mask = flat[0], data / f"{STEM}_mask.png"
    else:
        img, mask = sorted((data / "images").glob(f"{STEM}.*"))[0], data / "masks" / f"{STEM}.png"
    return np.asarray(Image.open(img).convert("RGB")), np.asarray(Image.open(mask))


def _timed_embedding(proposer, rgb, repeats):
    import torch

    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        proposer._compute(rgb)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _decoder_agreement(model, proposer, pts):
    """Our regrouped decoder against SAM2's own, same embedding, bf16 autocast, 25 prompts.

    Also times ``predict`` alone (prompt encoder and decoder, logits copied to the host) for
    both decoders, the median of 5 calls after a warm-up.
    """
    import torch

    from napari_sseg.backends.sam2 import SAM2Proposer
    from napari_sseg.core.fusion import HybridOptions, _nearest_negatives

    plain = SAM2Proposer(proposer.model_name, sam_model=model, fast_decoder=False)
    plain._use(proposer._features, proposer._image_shape)
    coords = pts.coords.astype(np.float64)
    negs = _nearest_negatives(coords, pts.labels, HybridOptions().negatives)
    a, b = proposer.predict(coords, negs), plain.predict(coords, negs)
    out = {"max_abs_logit_diff": float(np.abs(a.logits - b.logits).max()),
           "sign_disagreement": float(((a.logits > 0) != (b.logits > 0)).mean()),
           "max_abs_iou_diff": float(np.abs(a.iou - b.iou).max())}
    for key, prop in (("predict_fast", proposer), ("predict_sam", plain)):
        times = []
        for _ in range(5):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            prop.predict(coords, negs)
            times.append(time.perf_counter() - t0)
        out[key] = float(np.median(times))
    return out


def _plain_predictor(model, img, pts):
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        predictor.set_image(img)
        for warm in (True, False):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for r, c in pts.coords:
                predictor.predict(point_coords=np.array([[c, r]]), point_labels=np.array([1]),
                                  multimask_output=True)
            torch.cuda.synchronize()
            if not warm:
                return time.perf_counter() - t0


def run(data: Path, models, repeats):
    import torch

    from napari_sseg.backends.sam2 import SAM2Proposer, build_sam2_model
    from napari_sseg.core.fusion import HybridOptions, iter_hybrid_expand
    from napari_sseg.core.progress import run_generator

    image, gt = _load_tile(data)
    rows, extra = [], {}
    for name in models:
        torch.manual_seed(0)
        model = build_sam2_model(name, device="cuda")
        for side in (512, 1024):
            img, g = np.ascontiguousarray(image[:side, :side]), gt[:side, :side]
            proposer = SAM2Proposer(name, sam_model=model)
            proposer.set_image(img)  # warm-up (kernels, autotuning), then timed apart
            embed = _timed_embedding(proposer, img, repeats)
            for n in (25, 100):
                pts = _points(g, n)
                run_generator(iter_hybrid_expand(img, pts, proposer,
                                                 hybrid=HybridOptions(min_iou=0.0)))  # warm-up
                torch.cuda.reset_peak_memory_stats()
                after, t, info = median_run(img, pts, proposer, repeats)
                rows.append({
                    "model": name, "size": f"{side}x{side}", "points": n, "embedding": embed,
                    "decoding": t["decoding"], "per_point_ms": 1000 * t["decoding"] / n,
                    "wait": t["decoding_wait"], "choice": t["decoding_choice"],
                    "conflicts": t["conflicts"], "fill": t["fill"], "after": after,
                    "accepted": info["masks"]["accepted"],
                    "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1024**3,
                })
                print(json.dumps(rows[-1]), flush=True)
            if side == 1024:
                pts = _points(g, 25)
                extra[name] = {"plain_25": _plain_predictor(model, img, pts),
                               **_decoder_agreement(model, proposer, pts)}
                print(name, json.dumps(extra[name]), flush=True)
        del model
        torch.cuda.empty_cache()
    return rows, extra


def write_table(rows, extra, path: Path, repeats: int):
    import torch

    lines = [
        "# SAM2 hybrid expansion on a GPU: time split",
        "",
        f"Generated by `benchmarks/bench_sam2_gpu.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {torch.cuda.get_device_name(0)}, "
        f"torch {torch.__version__}, bf16 autocast, prompts decoded 8 at a time; the choice rule, "
        f"upsampling, conflicts and maskSLIC fill run on the host CPU ({os.cpu_count()} cores).",
        "",
        "SAM2.1 models with random weights (compute does not depend on the weights' values), a "
        "real aerial tile (aerial_dubai tile5 part 001) cropped to the size shown, points drawn "
        f"from its ground truth (seed 0), `min_iou=0` so that masks are kept. Seconds; the "
        f"median of {repeats} runs after warm-up.",
        "",
        "| model | image | points | embedding | decoding | of which waiting for the GPU | "
        "choice + upsample (CPU, overlapped) | per point (ms) | conflicts | maskSLIC fill | "
        "after embedding | masks kept | GPU peak (GB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['points']} | {r['embedding']:.3f} | "
            f"{r['decoding']:.3f} | {r['wait']:.3f} | {r['choice']:.3f} | "
            f"{r['per_point_ms']:.1f} | {r['conflicts']:.3f} | "
            f"{r['fill']:.3f} | {r['after']:.3f} | {r['accepted']} | {r['gpu_peak_gb']:.2f} |")
    lines += ["", "At 1024 x 1024 with 25 points:", ""]
    for name, e in extra.items():
        lines.append(
            f"- {name}: `SAM2ImagePredictor.predict` per point (three full-resolution masks) "
            f"takes {e['plain_25']:.3f} s for the 25 points; `SAM2Proposer.predict` for the 25 "
            f"prompts (low-resolution logits to the host) takes {e['predict_fast']:.3f} s with "
            f"our regrouped decoder and {e['predict_sam']:.3f} s with SAM2's own mask decoder; "
            f"ours against SAM2's under bf16 autocast: largest logit difference "
            f"{e['max_abs_logit_diff']:.3f}, low-resolution cells of another sign "
            f"{100 * e['sign_disagreement']:.3f} %, largest predicted-IoU difference "
            f"{e['max_abs_iou_diff']:.4f}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--models", nargs="+", default=["tiny", "large"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to time", file=sys.stderr)
        return 1
    rows, extra = run(args.data, args.models, args.repeats)
    write_table(rows, extra, args.out, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
