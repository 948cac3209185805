"""A U-Net survey model (segmentation-models-pytorch, resnet18 encoder, random initialisation).

For users with a GPU or hours: without pretrained weights a network needs far more steps than
a CPU gives in minutes (see the benchmark notes). Training works on the block-averaged images
(the card's ``downsample``): random square crops, flips and quarter turns, a cross-entropy
weighted by the inverse labelled share of each class that ignores unlabelled pixels, an epoch
of ``steps_per_epoch`` batches, then the mIoU on the held-out images; every epoch writes
``checkpoint.pt`` (model, optimiser, history: ``--resume`` continues from it after a kill) and,
when the validation mIoU improves, ``model.pt`` and ``card.json`` (so the folder always holds
the best model so far). Weights are state dicts, loaded with ``weights_only=True``; a user's
encoder weights come from a local file, nothing is ever downloaded.

torch and segmentation-models-pytorch are imported here only, when a U-Net is trained or loaded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..core.progress import Progress
from .card import ModelError, library_versions, write_card
from .features import channel_ranges
from .model import SurveyModel

__all__ = ["UNetModel", "iter_train_unet", "MODEL_FILE", "CHECKPOINT_FILE", "import_torch",
           "pick_device"]

MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
ENCODER = "resnet18"
_IGNORE = 255


def import_torch(device: str = "auto"):
    """Import torch (and make sure no triton is loaded when CUDA will not be used: triton's LLVM
    crashes a process that already holds a Mesa OpenGL context, such as napari's)."""
    if "torch" not in sys.modules and "triton" not in sys.modules and device in ("cpu", "mps") \
            and not os.environ.get("NAPARI_SSEG_ALLOW_TRITON"):
        sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"the U-Net needs torch and segmentation-models-pytorch ({exc}); "
                          f"install them with `pip install 'napari-sseg[learn]'`") from exc
    return torch


def pick_device(device: str = "auto") -> str:
    """'auto' -> 'cuda', else 'mps', else 'cpu'; an explicit one is checked."""
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise ValueError(f"device must be one of auto, cpu, cuda, mps; got {device!r}")
    torch = import_torch(device)
    has_cuda = torch.cuda.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if (device == "cuda" and not has_cuda) or (device == "mps" and not has_mps):
        raise ValueError(f"device {device!r} requested but torch cannot use it here; use "
                         f"--device cpu")
    return device


def _network(channels: int, n_classes: int):
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:
        raise ImportError(f"the U-Net needs segmentation-models-pytorch ({exc}); install it with "
                          f"`pip install 'napari-sseg[learn]'`") from exc
    return smp.Unet(encoder_name=ENCODER, encoder_weights=None, in_channels=channels,
                    classes=n_classes)


def _torch_load(path: Path, torch, what: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle refused, not a torch file
        raise ModelError(f"{path}: cannot read the {what} (truncated, or not a state dict saved "
                         f"by torch?): {exc}") from exc


def _atomic_torch_save(obj, path: Path, torch) -> None:
    from ..io.atomic import atomic_open

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def load_encoder_weights(net, path: str | os.PathLike, torch) -> dict:
    """Load a user's encoder state dict (keys with or without ``encoder.``) into ``net``.

    Raises
    ------
    ModelError
        Naming the file, when it cannot be read or none of its tensors fit the encoder.
    """
    path = Path(path)
    state = _torch_load(path, torch, "encoder weights")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    state = {k[len("encoder."):] if k.startswith("encoder.") else k: v for k, v in state.items()}
    own = net.encoder.state_dict()
    fitting = {k: v for k, v in state.items()
               if k in own and hasattr(v, "shape") and tuple(v.shape) == tuple(own[k].shape)}
    if not fitting:
        raise ModelError(f"{path}: none of its {len(state)} tensors fit the {ENCODER} encoder "
                         f"(names or shapes differ)")
    net.encoder.load_state_dict(fitting, strict=False)
    return {"file": str(path), "loaded": len(fitting), "encoder_tensors": len(own),
            "skipped": sorted(set(state) - set(fitting))[:20]}


class UNetModel(SurveyModel):
    """A survey model whose pixels are classified by a U-Net."""

    halo = 32

    def __init__(self, card: dict, folder: Path | None, net, device: str, torch):
        super().__init__(card, folder)
        self.net = net.to(device).eval()
        self.device = device
        self.torch = torch

    @classmethod
    def load(cls, card: dict, folder: Path, *, device: str = "auto") -> "UNetModel":
        torch = import_torch(device)
        dev = pick_device(device)
        net = _network(int(card["channels"]), len(card["classes"]))
        state = _torch_load(folder / MODEL_FILE, torch, "U-Net weights")
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise ModelError(f"{folder / MODEL_FILE}: does not fit the U-Net of its card: "
                             f"{exc}") from exc
        return cls(card, folder, net, dev, torch)

    def proba_small(self, small: np.ndarray) -> np.ndarray:
        return _net_proba(self.net, small, self.device, self.torch)


def _net_proba(net, small: np.ndarray, device: str, torch) -> np.ndarray:
    """(h, w, K) softmax of ``net`` on a normalised tile (padded to a multiple of 32)."""
    h, w = small.shape[:2]
    ph, pw = (-h) % 32, (-w) % 32
    x = np.pad(small, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 32 else "edge")
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(device)
    with torch.inference_mode():
        p = torch.softmax(net(t), dim=1)[0, :, :h, :w]
    return p.permute(1, 2, 0).float().cpu().numpy()


def _prepare(items, opts, spec, val_set, classes_hint):
    """Reduced images and class-index targets (255: ignored) of every item."""
    from .train import _check_channels, image_target, small_target

    f = spec.downsample
    data, channels, names = [], None, []
    for i, item in enumerate(items):
        image = item.load()
        channels = _check_channels(image, item, channels)
        target = image_target(item, image, opts.labels, min_confidence=opts.min_confidence)
        pts = item.bounded_points(target.shape) if opts.labels != "mask" else None
        small_t = small_target(target, f, pts)
        lo, hi = channel_ranges(image)
        data.append((item.name, spec.reduce(image, lo, hi), small_t, i in val_set))
        names.append(item.name)
    labelled = [t[t >= 0] for _, _, t, _ in data]
    classes = np.unique(np.concatenate(labelled)) if labelled else np.zeros(0, np.int64)
    if classes_hint is not None:
        classes = np.asarray(classes_hint, dtype=np.int64)
    if classes.size == 0 or not any(t.size and (t >= 0).any() for _, _, t, v in data if not v):
        shown = ", ".join(names[:5])
        raise ModelError(f"empty training set: no labelled pixel in the training images "
                         f"({shown}{' ...' if len(names) > 5 else ''}); give images with points "
                         f"or masks")
    out = []
    for name, img, t, is_val in data:
        idx = np.full(t.shape, _IGNORE, dtype=np.int64)
        for k, c in enumerate(classes):
            idx[t == c] = k
        out.append((name, img, idx, is_val))
    return out, classes, channels


def _batch(train_data, rng, size, crop):
    """Random crops (zero-padded when an image is smaller), flips and quarter turns."""
    xs, ys = [], []
    weights = np.array([max(1, int((t != _IGNORE).sum())) for _, _, t, _ in train_data], float)
    for _ in range(size):
        _, img, tgt, _ = train_data[rng.choice(len(train_data), p=weights / weights.sum())]
        h, w = tgt.shape
        r0 = rng.integers(0, max(1, h - crop + 1))
        c0 = rng.integers(0, max(1, w - crop + 1))
        x = np.zeros((crop, crop, img.shape[2]), np.float32)
        y = np.full((crop, crop), _IGNORE, np.int64)
        part = img[r0:r0 + crop, c0:c0 + crop]
        x[: part.shape[0], : part.shape[1]] = part
        y[: part.shape[0], : part.shape[1]] = tgt[r0:r0 + crop, c0:c0 + crop]
        k = int(rng.integers(0, 4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        xs.append(np.ascontiguousarray(x.transpose(2, 0, 1)))
        ys.append(np.ascontiguousarray(y))
    return np.stack(xs), np.stack(ys)


def _val_miou(net, val_data, device, torch, n_classes) -> float | None:
    from ..core.metrics import ConfusionMatrix

    if not val_data:
        return None
    net.eval()
    cm = ConfusionMatrix(ignore_index=_IGNORE)
    for _, img, tgt, _ in val_data:
        pred = _net_proba(net, img, device, torch).argmax(axis=2)
        cm.update(tgt, pred)
    net.train()
    s = cm.scores()["miou"]
    return None if s != s else float(s)


def iter_train_unet(items, out, *, class_names, options, spec, val_set, deadline, started):
    """Generator behind :func:`napari_sseg.learn.train.iter_train` for ``kind="unet"``."""
    from dataclasses import asdict

    from .card import CARD_NAME, read_card
    from .train import NORMALISATION

    opts = options
    out = Path(out)
    torch = import_torch(opts.device)
    device = pick_device(opts.device)
    rng = np.random.default_rng(opts.seed)
    torch.manual_seed(opts.seed)
    ckpt_path = out / CHECKPOINT_FILE
    previous = None
    if opts.resume:
        if not ckpt_path.is_file():
            raise ModelError(f"{ckpt_path}: no checkpoint to resume from (train without "
                             f"--resume first)")
        previous = _torch_load(ckpt_path, torch, "checkpoint")
        prev_card = read_card(out, check=False) if (out / CARD_NAME).is_file() else None
        if prev_card is not None and prev_card["kind"] != "unet":
            raise ModelError(f"{out / CARD_NAME}: holds a {prev_card['kind']}, not a U-Net")
    total_steps = opts.epochs
    yield Progress(0, total_steps + 1, "preparing images")
    hint = None
    if previous is not None:
        hint = [int(c) for c in previous["classes"].tolist()]
    data, classes, channels = _prepare(items, opts, spec, val_set, hint)
    if previous is not None and int(previous["channels"]) != channels:
        raise ModelError(f"{ckpt_path}: trained on {int(previous['channels'])}-channel images, "
                         f"these have {channels}")
    train_data = [d for d in data if not d[3]]
    val_data = [d for d in data if d[3]]
    k = classes.size
    counts = np.array([sum(int((t == i).sum()) for _, _, t, _ in train_data) for i in range(k)],
                      float)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / k, 0.0)
    net = _network(channels, k)
    encoder_info = None
    if opts.encoder_weights and previous is None:
        encoder_info = load_encoder_weights(net, opts.encoder_weights, torch)
    net = net.to(device).train()
    optim = torch.optim.AdamW(net.parameters(), lr=opts.learning_rate, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32,
                                                            device=device),
                                        ignore_index=_IGNORE)
    history, epoch, best = [], 0, -1.0
    if previous is not None:
        net.load_state_dict(previous["model"])
        optim.load_state_dict(previous["optimizer"])
        epoch = int(previous["epoch"])
        best = float(previous["best"])
        history = [{"epoch": int(e), "loss": float(lv), "val_miou": None if v != v else float(v)}
                   for e, lv, v in previous["history"].tolist()]
        rng = np.random.default_rng([opts.seed, epoch])
    crop = max(32, min(opts.crop, max(max(t.shape) for _, _, t, _ in train_data)))
    crop = crop - crop % 32
    names = class_names or {}
    card = {
        "kind": "unet",
        "classes": [{"id": int(c), "name": names.get(int(c), str(int(c)))} for c in classes],
        "channels": int(channels),
        "normalisation": NORMALISATION,
        "features": {"downsample": spec.downsample},
        "network": {"architecture": "Unet", "encoder": ENCODER, "library":
                    "segmentation-models-pytorch", "encoder_weights": encoder_info},
        "training": {"images": [n for n, _, _, v in data if not v], "labels": opts.labels,
                     "min_confidence": opts.min_confidence, "options": asdict(opts),
                     "device": device, "crop": crop, "class_weights": weights.tolist()},
        "versions": library_versions("torch", "segmentation_models_pytorch"),
        "files": [MODEL_FILE],
    }
    out.mkdir(parents=True, exist_ok=True)
    stopped = False
    while epoch < opts.epochs and not stopped:
        losses = []
        for _ in range(opts.steps_per_epoch):
            x, y = _batch(train_data, rng, opts.batch_size, crop)
            xt = torch.from_numpy(x).to(device)
            yt = torch.from_numpy(y).to(device)
            optim.zero_grad()
            loss = loss_fn(net(xt), yt)
            if torch.isfinite(loss):
                loss.backward()
                optim.step()
                losses.append(float(loss))
            if deadline is not None and opts.now() > deadline:
                stopped = True
                break
        epoch += 1
        miou = _val_miou(net, val_data, device, torch, k)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
                        "val_miou": miou})
        score = miou if miou is not None else float(epoch)  # no validation: the latest
        hist = np.array([[h["epoch"], np.nan if h["loss"] is None else h["loss"],
                          np.nan if h["val_miou"] is None else h["val_miou"]]
                         for h in history], dtype=np.float64)
        if score > best:
            best = score
            _atomic_torch_save(net.state_dict(), out / MODEL_FILE, torch)
            card["validation"] = {"images": [n for n, _, _, v in data if v], "miou": miou,
                                  "epoch": epoch, "history": history,
                                  "against": "the held-out images' training labels"}
            card["training"]["epochs_done"] = epoch
            card["training"]["stopped_early"] = stopped
            card["training"]["seconds"] = round(opts.now() - started, 2)
            write_card(out, card)
        _atomic_torch_save({"model": net.state_dict(), "optimizer": optim.state_dict(),
                            "epoch": epoch, "best": best, "history": torch.from_numpy(hist),
                            "classes": torch.from_numpy(classes), "channels": int(channels)},
                           ckpt_path, torch)
        yield Progress(epoch, total_steps + 1,
                       f"epoch {epoch}: loss {history[-1]['loss'] or float('nan'):.3f}"
                       + (f", val mIoU {100 * miou:.1f}" if miou is not None else ""))
    final = read_card(out)
    final["validation"]["history"] = history  # every epoch, also after the best one
    final["training"]["stopped_early"] = stopped
    final["training"]["epochs_done"] = epoch
    final["files"] = list(final["files"])
    write_card(out, final)
    yield Progress(total_steps + 1, total_steps + 1, "saved")
    return read_card(out)
