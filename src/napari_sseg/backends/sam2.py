"""SAM2 mask proposer: the only module of napari-sseg that imports torch or sam2.

It is also the only place where (row, col) pixel coordinates become SAM2's (x, y) (see
:meth:`SAM2Proposer.predict`). Everything here is loaded lazily: ``import
napari_sseg.backends.sam2`` itself imports neither torch nor sam2; :func:`import_sam2` does, safely.

What it does
------------
* builds a SAM2.1 model by name (tiny, small, base_plus, large) from the ``sam2`` package's config
  and loads a checkpoint with ``torch.load(..., weights_only=True)``, with clear errors for a
  missing, truncated, corrupted or mismatched file (:func:`load_sam2_model`);
* embeds an image once (``set_image``), caching the embedding in memory and, optionally, on disk
  under a key made of a hash of the image, the model's name and weights and the package versions;
  cache files are written atomically and checked on load (a stale or damaged file is recomputed);
* decodes prompts by calling SAM2's prompt encoder and a regrouped but arithmetically equal
  version of its mask decoder (:class:`_FastDecoder`), on the CPU spread over worker threads,
  and returns the 256 x 256 low-resolution logits and predicted IoUs only: nothing is upsampled
  here (the fusion upsamples only the masks it keeps, as bounding-box crops);
* images larger than 2048 pixels on a side are shrunk with a box filter to 1024 x 1024 before SAM2
  sees them (SAM2 resizes every image to 1024 x 1024 anyway), so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..core.proposals import Candidates
from .base import CheckpointError

__all__ = [
    "MODELS",
    "SAM2Proposer",
    "build_sam2_model",
    "import_sam2",
    "load_sam2_model",
    "resolve_device",
]

logger = logging.getLogger(__name__)

#: model name -> (package-relative Hydra config, checkpoint file name, parameters in millions)
MODELS: dict[str, tuple[str, str, float]] = {
    "tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt", 38.9),
    "small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt", 46.0),
    "base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt", 80.8),
    "large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt", 224.4),
}

DOWNLOAD_HINT = (
    "Download the SAM2.1 checkpoints with `bash checkpoints/download_checkpoints.sh` from a source "
    "checkout (see checkpoints/README.md), or fetch "
    "https://dl.fbaipublicfiles.com/segment_anything_2/092824/{file} into ~/.cache/napari-sseg/"
    "checkpoints/ or point --checkpoint / NAPARI_SSEG_CHECKPOINT at it."
)

#: images with a side above this are shrunk to SAM2's input size before embedding
MAX_DIRECT_SIDE = 2048
_CACHE_FORMAT = 1


def _nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is visible (checked without importing torch)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl"))


def import_sam2(device: str = "auto") -> SimpleNamespace:
    """Import torch and sam2 safely, even inside a running napari viewer.

    Why this exists: on Linux with Mesa's software OpenGL (llvmpipe; Xvfb, remote desktops,
    machines without a GPU driver), importing torchvision *after* an OpenGL context exists
    segfaults the process: torchvision pulls ``torch._dynamo``, which imports ``triton``, and
    triton's bundled LLVM clashes with the LLVM Mesa has already loaded. napari creates its GL
    canvas long before the plugin asks for SAM2, so the plugin cannot rely on importing torch
    first. SAM2 inference never needs triton (it only serves ``torch.compile`` on CUDA), so when
    CUDA is not going to be used and triton is not imported yet, we register ``triton`` as
    unavailable (``sys.modules["triton"] = None``: ``import triton`` then raises ImportError and
    torch falls back to its triton-free paths). Set ``NAPARI_SSEG_ALLOW_TRITON=1`` to opt out.

    Parameters
    ----------
    device : str
        'auto', 'cpu', 'cuda' or 'mps': triton is left alone when CUDA may be used
        ('cuda', or 'auto' with an NVIDIA driver present).

    Returns
    -------
    namespace
        ``torch``, ``build_sam2`` and ``SAM2ImagePredictor``.

    Raises
    ------
    ImportError
        If torch or sam2 is not installed, with the command that installs them.
    """
    cuda_possible = device == "cuda" or (device == "auto" and _nvidia_driver_present())
    if (
        "triton" not in sys.modules
        and not cuda_possible
        and not os.environ.get("NAPARI_SSEG_ALLOW_TRITON")
    ):
        sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
    try:
        import torch
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor
    except ImportError as exc:
        raise ImportError(
            f"the SAM2 backend needs torch and sam2 ({exc}); install them with "
            "`pip install 'napari-sseg[sam2]'`"
        ) from exc
    return SimpleNamespace(torch=torch, build_sam2=build_sam2,
                           SAM2ImagePredictor=SAM2ImagePredictor)


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' if available, else 'mps' if available, else 'cpu'; checks explicit ones.

    Raises
    ------
    ValueError
        If ``device`` is unknown or not available on this machine.
    """
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise ValueError(f"device must be one of auto, cpu, cuda, mps; got {device!r}")
    torch = import_sam2(device).torch
    has_cuda = torch.cuda.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if device == "cuda" and not has_cuda:
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")
    if device == "mps" and not has_mps:
        raise ValueError("device 'mps' requested but torch's MPS backend is not available")
    return device


def _check_model_name(model: str) -> tuple[str, str, float]:
    if model not in MODELS:
        raise ValueError(f"unknown SAM2 model {model!r}; choose one of {', '.join(MODELS)}")
    return MODELS[model]


def build_sam2_model(model: str = "tiny", *, device: str = "cpu"):
    """Build a SAM2.1 model from the package config with random (untrained) weights.

    Used by tests and benchmarks (compute does not depend on the weights' values) and as the
    first step of :func:`load_sam2_model`.
    """
    cfg, _, _ = _check_model_name(model)
    mods = import_sam2(device)
    return mods.build_sam2(cfg, ckpt_path=None, device=device)


def _read_state_dict(path: Path, model: str):
    """torch.load the checkpoint's state dict with weights_only=True and clear errors."""
    torch = import_sam2().torch
    _, file_name, params_m = _check_model_name(model)
    if not path.is_file():
        raise CheckpointError(f"SAM2 checkpoint {path} does not exist. "
                              + DOWNLOAD_HINT.format(file=file_name))
    size = path.stat().st_size
    if path.name in {v[1] for v in MODELS.values()}:
        expected_model = next(k for k, v in MODELS.items() if v[1] == path.name)
        min_size = int(MODELS[expected_model][2] * 1e6 * 4 * 0.97)  # float32 parameters
        if size < min_size:
            raise CheckpointError(
                f"SAM2 checkpoint {path} is truncated: {size:,} bytes, but a complete "
                f"{path.name} holds at least {min_size:,}. Delete it and download it again. "
                + DOWNLOAD_HINT.format(file=path.name)
            )
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # zip errors, unpickling errors, EOF...
        raise CheckpointError(
            f"could not read SAM2 checkpoint {path} ({size:,} bytes): the file is truncated, "
            f"corrupted or not a PyTorch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Delete it and download it again. "
            + DOWNLOAD_HINT.format(file=file_name)
        ) from exc
    state = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} is not a SAM2 checkpoint: expected a dict with a 'model' state dict, got "
            f"{type(payload).__name__}"
            + (f" with keys {sorted(payload)[:5]}" if isinstance(payload, dict) else "")
        )
    return state


def load_sam2_model(model: str = "tiny", checkpoint: str | os.PathLike | None = None, *,
                    device: str = "auto"):
    """Build SAM2.1 ``model`` and load its checkpoint safely.

    Parameters
    ----------
    model : {'tiny', 'small', 'base_plus', 'large'}
    checkpoint : path-like
        The ``.pt`` file (``torch.load(..., weights_only=True)``: no code is unpickled).
    device : str
        'auto', 'cpu', 'cuda' or 'mps'.

    Returns
    -------
    torch.nn.Module
        The model in eval mode on the resolved device.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupted or holds another model's weights; the
        message names the file and says what to do.
    """
    if checkpoint is None:
        raise CheckpointError("no SAM2 checkpoint given. "
                              + DOWNLOAD_HINT.format(file=MODELS[model][1]))
    path = Path(checkpoint).expanduser()
    dev = resolve_device(device)
    state = _read_state_dict(path, model)
    sam = build_sam2_model(model, device="cpu")
    own = sam.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        detail = "; ".join(
            f"{what}: {len(keys)} (e.g. {keys[0]})"
            for what, keys in (("missing", missing), ("unexpected", unexpected),
                               ("wrong shape", wrong_shape)) if keys
        )
        others = [k for k, v in MODELS.items() if v[1] == path.name and k != model]
        hint = (f" The file name suggests model {others[0]!r}: pass --model {others[0]}."
                if others else "")
        raise CheckpointError(
            f"{path} does not hold SAM2.1 {model!r} weights ({detail}).{hint} Use the checkpoint "
            f"that matches --model ({MODELS[model][1]})."
        )
    sam.load_state_dict(state, strict=True)
    sam = sam.to(dev)
    sam.eval()
    logger.info("loaded SAM2.1 %s from %s on %s", model, path, dev)
    return sam


def _model_fingerprint(sam) -> str:
    """A cheap fingerprint of a model's weights (names, shapes and first values of every tensor)."""
    h = hashlib.sha256()
    for name, tensor in sam.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        flat = tensor.detach().reshape(-1)[:16].float().cpu().numpy()
        h.update(flat.tobytes())
    return h.hexdigest()[:24]


def _image_digest(image: np.ndarray) -> str:
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256()
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def _shrink_to(rgb: np.ndarray, side: int) -> np.ndarray:
    """Box-filter resize of a large uint8 RGB image to (side, side), without float copies."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BOX))



class _FastDecoder:
    """SAM2's mask decoder regrouped for speed: same arithmetic up to float rounding.

    ``MaskDecoder.predict_masks`` (SAM2 1.1.0) is evaluated with these exact rewrites:

    * prompt-independent image work is done once per image: in the first two-way block the image
      keys are the image embedding plus the constant "no mask" embedding, so its token-to-image
      keys / values and image-to-token queries are cached, as are the positional terms and the
      high-resolution features in the layout used below (with the transposed convolutions'
      biases folded in);
    * attention of the few prompt tokens to the 4096 image tokens is computed without projecting
      the image tokens: ``softmax(q (X Wk + bk)^T) (X Wv + bv) = softmax((q Wk^T) X^T) X Wv + bv``
      (the ``q . bk`` term is constant along the softmax and cancels; softmax rows sum to one);
    * attention of the image tokens to the prompt tokens folds the query projection into the
      keys and the value and output projections into one (tokens x channels) matrix per head, so
      the residual add, the output projection and the attention output are one ``baddbmm``;
    * each block's image update (attention of the image tokens to the prompt tokens, then
      ``norm4``) is fused with the next attention of the prompt tokens to the image, in one pass
      over tiles of image tokens: the softmax over the image runs with a running maximum and sum
      (as in flash attention), so no image-sized intermediate leaves the CPU cache except the
      updated image tokens;
    * the 2 x 2 stride-2 transposed convolutions are matrix products on the token layout (no
      transposes), followed by ``layer_norm`` over the channels (= SAM2's ``LayerNorm2d``) and
      in-place GELU; only the three multimask outputs are computed (SAM2 computes a fourth mask
      that multimask output discards).

    The result equals ``sam_mask_decoder(..., multimask_output=True)`` up to float rounding
    (tested).
    """

    def __init__(self, sam, features: dict):
        torch = import_sam2().torch
        self._torch = torch
        self._F = torch.nn.functional
        self.dec = dec = sam.sam_mask_decoder
        tr = dec.transformer
        pe = sam.sam_prompt_encoder.get_dense_pe()
        dense = sam.sam_prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        embed = features["image_embed"]
        _, c, h, w = self.shape = tuple(embed.shape)  # (1, C, h, w)
        self.src0 = (embed + dense).flatten(2).permute(0, 2, 1).contiguous()  # (1, HW, C)
        self.pe = pe.flatten(2).permute(0, 2, 1).contiguous()
        first = tr.layers[0]
        keys_pe = self.src0 + self.pe
        t2i = first.cross_attn_token_to_image
        i2t = first.cross_attn_image_to_token
        self.k1 = t2i._separate_heads(t2i.k_proj(keys_pe), t2i.num_heads)
        self.v1 = t2i._separate_heads(t2i.v_proj(self.src0), t2i.num_heads)
        # image -> token queries of the first block, scaled by 1 / sqrt(head dim), (HW, D)
        self.q1 = i2t.q_proj(keys_pe)[0] * self._scale(i2t)
        if dec.pred_obj_scores:
            self.out_tokens = torch.cat(
                [dec.obj_score_token.weight, dec.iou_token.weight, dec.mask_tokens.weight])
            self.s = 1
        else:
            self.out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight])
            self.s = 0
        self.high_res = dec.use_high_res_features
        if self.high_res:
            dc1, ln1, act1, dc2, act2 = dec.output_upscaling
            feat_s0, feat_s1 = features["high_res_feats"]
            c1, c2 = dc1.out_channels, dc2.out_channels
            # transposed conv k=2, s=2 == per-token matmul to (2, 2, C_out) outputs
            self.w_up1 = dc1.weight.permute(0, 2, 3, 1).reshape(c, 4 * c1).contiguous()
            self.w_up2 = dc2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2).contiguous()
            # feat_s1 (1, c1, 2h, 2w) -> (h*w, [a, b, c1]) with row 2i+a, col 2j+b, plus bias
            f1 = feat_s1.reshape(c1, h, 2, w, 2).permute(1, 3, 2, 4, 0).reshape(h * w, 4 * c1)
            self.f1 = (f1 + dc1.bias.repeat(4)).contiguous()
            # feat_s0 (1, c2, 4h, 4w) -> (h*w*4, [a2, b2, c2]) with row 4i+2a1+a2, col 4j+2b1+b2
            f0 = feat_s0.reshape(c2, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0)
            self.f0 = (f0.reshape(h * w * 4, 4 * c2) + dc2.bias.repeat(4)).contiguous()
            self.c1, self.c2 = c1, c2
        # image tokens per tile of the fused passes and the upscaling: tiles that stay in a
        # CPU's cache; one tile on a GPU (fewer kernel launches)
        self.tile = 1024 if embed.device.type == "cpu" else h * w

    @staticmethod
    def _scale(attn) -> float:
        return 1.0 / float(attn.internal_dim // attn.num_heads) ** 0.5

    @staticmethod
    def _heads(attn) -> tuple[int, int]:
        return attn.num_heads, attn.internal_dim // attn.num_heads

    def _fold_token_queries(self, attn, q_in):
        """(B, T, C) token queries -> (B, heads * T, C) rows that score raw image tokens."""
        b, t, _ = q_in.shape
        nh, dh = self._heads(attn)
        qh = attn.q_proj(q_in).reshape(b, t, nh, dh) * self._scale(attn)
        wk = attn.k_proj.weight.reshape(nh, dh, -1)  # (heads, dh, C)
        return self._torch.einsum("bthd,hdc->bhtc", qh, wk).reshape(b, nh * t, -1)

    def _token_attention_output(self, attn, r):
        """Softmax-weighted sums of raw image tokens, (B, heads * T, C) -> attention output."""
        b = r.shape[0]
        nh, dh = self._heads(attn)
        r = r.reshape(b, nh, -1, r.shape[-1])
        wv = attn.v_proj.weight.reshape(nh, dh, -1)
        o = self._torch.einsum("bhtc,hdc->bthd", r, wv).reshape(b, -1, nh * dh)
        return attn.out_proj(o + attn.v_proj.bias)

    def _image_pass(self, layer, keys, k_in, v_in, rows):
        """One block's image-to-token attention, fused with the next token-to-image attention.

        Parameters
        ----------
        layer : TwoWayAttentionBlock
            The block whose ``cross_attn_image_to_token`` and ``norm4`` update the image tokens.
        keys : list of ((B, n, C), (B, n, C)) tensor pairs, or None
            Image tokens entering the block, tile by tile, each with its sum with the positional
            embedding; None for the first block (cached input).
        k_in, v_in : (B, T, C) tensors
            Keys (queries plus their positional embedding) and values of the prompt tokens.
        rows : (B, R, C) tensor
            The next token-to-image attention's queries folded with its key projection
            (:meth:`_fold_token_queries`).

        Returns
        -------
        keys : list of tensor pairs
            The updated image tokens, tile by tile, with their positional sums (kept as tiles:
            no copy into an image-sized tensor).
        r : (B, R, C) tensor
            ``softmax(rows (keys + pe)^T) keys``, accumulated tile by tile with a running
            maximum (the softmax of flash attention), so that every image-sized intermediate of
            a tile stays in the CPU cache.
        """
        torch, F = self._torch, self._F
        attn = layer.cross_attn_image_to_token
        b, t, _ = k_in.shape
        nh, dh = self._heads(attn)
        kh = attn.k_proj(k_in).reshape(b, t, nh, dh)
        vh = attn.v_proj(v_in).reshape(b, t, nh, dh)
        if keys is None:  # cached, projected and scaled image queries: block-diagonal keys
            kbd = kh.new_zeros(b, nh, dh, nh, t)
            idx = torch.arange(nh, device=kh.device)
            kbd[:, idx, :, idx, :] = kh.permute(2, 0, 3, 1)
            mat, cst = kbd.reshape(b, nh * dh, nh * t), None
        else:  # fold the query projection into the keys
            wq = attn.q_proj.weight.reshape(nh, dh, -1) * self._scale(attn)
            mat = torch.einsum("bthd,hdc->bcht", kh, wq).reshape(b, -1, nh * t)
            cst = torch.einsum("bthd,hd->bht", kh, attn.q_proj.bias.reshape(nh, dh)
                               * self._scale(attn)).reshape(b, 1, nh * t)
        # value and output projections in one (heads * T, C) matrix
        wo = attn.out_proj.weight.reshape(-1, nh, dh)  # (C, heads, dh)
        u = (torch.einsum("bthd,chd->bhtc", vh, wo) + attn.out_proj.bias / nh).reshape(b, nh * t, -1)
        norm = layer.norm4
        hw = self.src0.shape[1]
        new_keys = []
        n_rows = rows.shape[1]
        # the running softmax in float32 (as autocast runs softmax), whatever the matmul dtype
        f32 = dict(dtype=torch.float32, device=rows.device)
        run_max = torch.full((b, n_rows, 1), -float("inf"), **f32)
        run_sum = torch.zeros((b, n_rows, 1), **f32)
        acc = torch.zeros((b, n_rows, rows.shape[2]), **f32)
        for i, t0 in enumerate(range(0, hw, self.tile)):
            sl = slice(t0, min(hw, t0 + self.tile))
            if keys is None:
                resid = self.src0[:, sl].expand(b, -1, -1)
                s = torch.matmul(self.q1[sl], mat)
            else:
                resid, resid_pe = keys[i]
                s = torch.baddbmm(cst, resid_pe, mat)
            n = s.shape[1]
            p = s.view(b, n, nh, t).softmax(dim=-1).view(b, n, nh * t)
            y = F.layer_norm(torch.baddbmm(resid, p, u), norm.normalized_shape, norm.weight,
                             norm.bias, norm.eps)
            y_pe = y + self.pe[:, sl]
            new_keys.append((y, y_pe))
            # the next token-to-image attention, softmax over the tiles seen so far
            sc = torch.bmm(rows, y_pe.transpose(1, 2)).float()  # (B, R, n)
            tile_max = torch.maximum(run_max, sc.amax(dim=-1, keepdim=True))
            rescale = (run_max - tile_max).exp_()
            e = sc.sub_(tile_max).exp_()
            run_sum = run_sum * rescale + e.sum(dim=-1, keepdim=True)
            acc = torch.baddbmm(acc * rescale, e, y.float())
            run_max = tile_max
        return new_keys, acc / run_sum

    def __call__(self, sparse):
        """(B, T, C) sparse prompt embeddings -> (B, 3, 4h, 4w) logits, (B, 3) IoUs."""
        F, torch = self._F, self._torch
        dec = self.dec
        tr = dec.transformer
        first = tr.layers[0]
        b = sparse.shape[0]
        tokens = torch.cat([self.out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        # first block (skip_first_layer_pe): self-attention of the tokens
        queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
        # tokens -> image, with the cached keys / values (all B x T queries in one batch)
        t2i = first.cross_attn_token_to_image
        q = t2i.q_proj(queries + tokens)  # (B, T, D)
        n_t = q.shape[1]
        qh = t2i._separate_heads(q.reshape(1, b * n_t, -1), t2i.num_heads)
        out = F.scaled_dot_product_attention(qh, self.k1, self.v1)
        out = t2i.out_proj(t2i._recombine_heads(out)).reshape(b, n_t, -1)
        queries = first.norm2(queries + out)
        queries = first.norm3(queries + first.mlp(queries))
        # the final attention only for the tokens that are read: the IoU token and the three
        # multimask tokens (each token attends to the image independently of the others)
        s = self.s
        keep = [s] + list(range(s + 2, s + 1 + dec.num_mask_tokens))
        keys = None
        for i, layer in enumerate(tr.layers):
            # the prompt side of the next token -> image attention: the next block's
            # self-attention, or the final attention
            if i + 1 < len(tr.layers):
                nxt = tr.layers[i + 1]
                attn = nxt.cross_attn_token_to_image
                q = queries + tokens
                q_next = nxt.norm1(queries + nxt.self_attn(q=q, k=q, v=queries))
                pe_next = tokens
            else:
                nxt = None
                attn = tr.final_attn_token_to_image
                q_next, pe_next = queries[:, keep], tokens[:, keep]
            rows = self._fold_token_queries(attn, q_next + pe_next)
            keys, r = self._image_pass(layer, keys, queries + tokens, queries, rows)
            out = self._token_attention_output(attn, r)
            if nxt is not None:
                queries = nxt.norm2(q_next + out)
                queries = nxt.norm3(queries + nxt.mlp(queries))
        hs = tr.norm_final_attn(q_next + out)
        iou = dec.iou_prediction_head(hs[:, 0, :])[:, 1:]
        hyper = torch.stack([dec.output_hypernetworks_mlps[i](hs[:, i, :])
                             for i in range(1, dec.num_mask_tokens)], dim=1)  # (B, 3, c2)
        _, c, h, w = self.shape
        if not self.high_res:  # not used by the SAM2.1 configs: SAM2's own modules
            src = torch.cat([y for y, _ in keys], dim=1).transpose(1, 2).reshape(b, c, h, w)
            up = dec.output_upscaling(src)
            _, cu, hu, wu = up.shape
            masks = (hyper @ up.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
            return masks, iou
        return self._upscale(keys, hyper), iou

    def _upscale(self, keys, hyper):
        """Image tokens (tiles of :meth:`_image_pass`), (B, K, c2) hypernetwork weights ->
        (B, K, 4h, 4w) logits.

        Runs tile by tile so that the (4x and 16x larger) intermediate feature maps stay in the
        CPU cache.
        """
        F, torch = self._F, self._torch
        dc1, ln1, act1, dc2, act2 = self.dec.output_upscaling
        _, _, h, w = self.shape
        c1, c2 = self.c1, self.c2
        b, k = hyper.shape[:2]
        hw = h * w
        masks = None  # (B, K, pixels), allocated with the dtype of the first tile (autocast)
        for i in range(b):
            t0 = 0
            for y, _ in keys:
                t1 = t0 + y.shape[1]
                up = torch.addmm(self.f1[t0:t1], y[i], self.w_up1)
                up = F.layer_norm(up.view(-1, c1), (c1,), ln1.weight, ln1.bias, ln1.eps)
                up = self._gelu_(up, act1)
                up = torch.addmm(self.f0[4 * t0:4 * t1], up, self.w_up2)
                up = self._gelu_(up, act2)  # ([i, j, a1, b1], [a2, b2, c2])
                part = torch.mm(hyper[i], up.view(-1, c2).t())  # (K, [i, j, a1, b1, a2, b2])
                if masks is None:
                    masks = part.new_empty(b, k, hw * 16)
                masks[i, :, 16 * t0:16 * t1] = part
                t0 = t1
        # pixels [i, j, a1, b1, a2, b2] -> row 4i + 2a1 + a2, column 4j + 2b1 + b2, in two
        # transposes that move blocks of 4 and 2 values (one 8-D permute moves single values)
        masks = masks.view(b * k * h, w, 2, 2, 4).permute(0, 2, 1, 3, 4).contiguous()
        masks = masks.view(b * k * h * 2, w * 2, 2, 2).permute(0, 2, 1, 3)
        return masks.reshape(b, k, 4 * h, 4 * w)

    def _gelu_(self, x, act):
        """``act(x)``, in place for SAM2's GELU."""
        if isinstance(act, self._torch.nn.GELU):
            return self._torch.ops.aten.gelu_(x, approximate=act.approximate)
        return act(x)


class SAM2Proposer:
    """SAM2.1 image predictor behind the :class:`~napari_sseg.backends.base.MaskProposer` interface.

    Parameters
    ----------
    model : {'tiny', 'small', 'base_plus', 'large'}
    checkpoint : path-like, optional
        Checkpoint to load. Required unless ``sam_model`` is given.
    device : str
        'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda' or 'mps'.
    cache_dir : path-like, optional
        Folder for image embeddings on disk (created if needed).
    sam_model : torch.nn.Module, optional
        An already built SAM2 model (tests and benchmarks use random-weight models).
    batch_size : int, optional
        Most prompts decoded together in one mask-decoder call. Default: 4 on the CPU (the
        prompts of one call are split into nearly equal batches, as many as the ``workers`` or
        a multiple of them), 8 on a GPU.
    memory_cache : int
        Embeddings kept in memory.
    fast_decoder : bool
        Decode with SAM2's mask decoder regrouped for speed (prompt-independent image work done
        once per image, projections folded; same results up to float rounding, see
        :class:`_FastDecoder`); False calls ``sam_mask_decoder`` as is.
    workers : int, optional
        CPU only: batches decoded in parallel by this many threads, each running torch with one
        intra-op thread (faster than torch's own threading for the decoder's many small
        operations, and robust when other processes load the CPU). Default: torch's number of
        intra-op threads. 1 decodes in the calling thread with torch's threading.
    """

    def __init__(
        self,
        model: str = "tiny",
        *,
        checkpoint: str | os.PathLike | None = None,
        device: str = "auto",
        cache_dir: str | os.PathLike | None = None,
        sam_model=None,
        batch_size: int | None = None,
        memory_cache: int = 4,
        fast_decoder: bool = True,
        workers: int | None = None,
    ) -> None:
        _check_model_name(model)
        self._mods = import_sam2(device)
        if sam_model is None:
            sam_model = load_sam2_model(model, checkpoint, device=device)
            weights = f"{Path(checkpoint).name}:{Path(checkpoint).stat().st_size}"
        else:
            weights = "in-memory"
        self.model_name = model
        self.sam = sam_model
        self.device = str(next(sam_model.parameters()).device.type)
        if batch_size is None:
            batch_size = 4 if self.device == "cpu" else 8
        self.batch_size = max(1, int(batch_size))
        self.workers = None if workers is None else max(1, int(workers))
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self._weights_id = f"{weights}:{_model_fingerprint(sam_model)}"
        self._memory: OrderedDict[str, dict] = OrderedDict()
        self._memory_size = max(1, int(memory_cache))
        self.fast_decoder = bool(fast_decoder)
        self._decoder: _FastDecoder | None = None
        self._features: dict | None = None
        self._image_shape: tuple[int, int] | None = None
        #: where the last embedding came from: 'computed', 'memory' or 'disk'
        self.embedding_source: str | None = None
        ckpt = (f", checkpoint {checkpoint}" if checkpoint is not None
                else ", weights given in memory")
        self.name = f"sam2.1 {model} on {self.device}{ckpt}"

    # -- embedding -------------------------------------------------------------------------
    def embedding_key(self, image: np.ndarray) -> dict:
        """The fields that identify an image embedding (checked when a cached one is loaded)."""
        from importlib.metadata import PackageNotFoundError, version

        from .. import __version__

        try:
            sam2_version = version("sam2")
        except PackageNotFoundError:  # pragma: no cover
            sam2_version = "unknown"
        return {
            "format": _CACHE_FORMAT,
            "image": _image_digest(image),
            "model": self.model_name,
            "weights": self._weights_id,
            "napari_sseg": __version__,
            "sam2": sam2_version,
        }

    def _key_string(self, key: dict) -> str:
        return json.dumps(key, sort_keys=True)

    def set_image(self, image: np.ndarray) -> None:
        """Embed ``image`` ((M, N) or (M, N, C), any dtype), from the caches when possible."""
        from ..core.image import to_rgb_uint8

        arr = np.asarray(image)
        rgb = to_rgb_uint8(arr)
        key = self.embedding_key(arr)
        skey = self._key_string(key)
        shape = (int(rgb.shape[0]), int(rgb.shape[1]))
        if skey in self._memory:
            self._memory.move_to_end(skey)
            self._use(self._memory[skey], shape)
            self.embedding_source = "memory"
            return
        feats = self._load_disk(skey)
        if feats is not None:
            self.embedding_source = "disk"
        else:
            feats = self._compute(rgb)
            self.embedding_source = "computed"
            self._save_disk(skey, feats)
        self._memory[skey] = feats
        while len(self._memory) > self._memory_size:
            self._memory.popitem(last=False)
        self._use(feats, shape)

    def _use(self, feats: dict, shape: tuple[int, int]) -> None:
        self._features, self._image_shape = feats, shape
        self._decoder = None
        if self.fast_decoder:
            torch = self._mods.torch
            with torch.inference_mode(), self._autocast():
                self._decoder = _FastDecoder(self.sam, feats)

    def _autocast(self):
        torch = self._mods.torch
        if self.device == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _compute(self, rgb: np.ndarray) -> dict:
        torch = self._mods.torch
        side = int(self.sam.image_size)
        if max(rgb.shape[:2]) > MAX_DIRECT_SIDE:
            rgb = _shrink_to(rgb, side)
        predictor = self._mods.SAM2ImagePredictor(self.sam)
        with torch.inference_mode(), self._autocast():
            predictor.set_image(rgb)
            feats = predictor._features  # sam2 1.1.0: {"image_embed", "high_res_feats"}
            # contiguous copies: the same memory layout as embeddings loaded from the disk
            # cache, so that both decode to bit-identical logits
            fmt = torch.contiguous_format
            out = {
                "image_embed": feats["image_embed"].detach().clone(memory_format=fmt),
                "high_res_feats": [f.detach().clone(memory_format=fmt)
                                   for f in feats["high_res_feats"]],
            }
        predictor.reset_predictor()
        return out

    def _cache_path(self, skey: str) -> Path | None:
        if self.cache_dir is None:
            return None
        name = hashlib.sha256(skey.encode()).hexdigest()[:32]
        return self.cache_dir / f"sam2-embedding-{name}.npz"

    def _load_disk(self, skey: str) -> dict | None:
        path = self._cache_path(skey)
        if path is None or not path.is_file():
            return None
        torch = self._mods.torch
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = str(data["key"])
                if stored != skey:
                    logger.info("embedding cache %s is stale (key differs): recomputing", path)
                    return None
                embed = data["image_embed"]
                hr = [data["high_res_0"], data["high_res_1"]]
        except Exception as exc:  # damaged file: recompute and overwrite
            logger.warning("embedding cache %s is unreadable (%s): recomputing", path, exc)
            return None
        dev = next(self.sam.parameters()).device
        return {
            "image_embed": torch.from_numpy(embed).to(dev),
            "high_res_feats": [torch.from_numpy(h).to(dev) for h in hr],
        }

    def _save_disk(self, skey: str, feats: dict) -> None:
        path = self._cache_path(skey)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "key": np.array(skey),
            "image_embed": feats["image_embed"].float().cpu().numpy(),
            "high_res_0": feats["high_res_feats"][0].float().cpu().numpy(),
            "high_res_1": feats["high_res_feats"][1].float().cpu().numpy(),
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- decoding --------------------------------------------------------------------------
    def prompt_coordinates(self, points_rc: np.ndarray) -> np.ndarray:
        """(row, col) image pixels -> SAM2 model input (x, y) coordinates, shape (..., 2)."""
        if self._image_shape is None:
            raise RuntimeError("set_image must be called before predicting masks")
        m, n = self._image_shape
        side = float(self.sam.image_size)
        rc = np.asarray(points_rc, dtype=np.float64)
        # THE (row, col) -> (x, y) flip of napari-sseg: SAM2 wants x = column, y = row.
        xy = rc[..., ::-1]
        return (xy / np.array([n, m], dtype=np.float64) * side).astype(np.float32)

    def _decode(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One batch of prompts of equal length (model input (x, y), labels) -> logits, IoUs."""
        torch = self._mods.torch
        dev = next(self.sam.parameters()).device
        with torch.inference_mode(), self._autocast():
            c = torch.as_tensor(coords, device=dev)
            lab = torch.as_tensor(labels, device=dev)
            sparse, dense = self.sam.sam_prompt_encoder(points=(c, lab), boxes=None, masks=None)
            if self._decoder is not None:
                low, iou = self._decoder(sparse)
            else:
                low, iou, _, _ = self.sam.sam_mask_decoder(
                    image_embeddings=self._features["image_embed"],
                    image_pe=self.sam.sam_prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=True,
                    repeat_image=c.shape[0] > 1,
                    high_res_features=self._features["high_res_feats"],
                )
            low = torch.clamp(low.float(), -32.0, 32.0)
            return low.cpu().numpy(), iou.float().cpu().numpy()

    def predict(
        self,
        points_rc: np.ndarray,
        negatives_rc: Sequence[np.ndarray] | None = None,
    ) -> Candidates:
        """Three candidate masks per positive point, as 256 x 256 logits and predicted IoUs.

        Parameters
        ----------
        points_rc : (B, 2) ndarray
            One positive click per prompt, (row, col).
        negatives_rc : sequence of B (K_i, 2) ndarrays, optional
            Negative clicks of each prompt, (row, col).

        Returns
        -------
        Candidates
            ``logits`` (B, 3, 256, 256) clamped to [-32, 32] as SAM2 does, ``iou`` (B, 3).
        """
        stream = self.predict_batches([(points_rc, negatives_rc)])
        try:
            return next(stream)
        finally:
            stream.close()

    def predict_batches(
        self,
        batches: Iterable[tuple[np.ndarray, Sequence[np.ndarray] | None]],
        *,
        ahead: int = 3,
    ) -> Iterator[Candidates]:
        """:meth:`predict` for a sequence of batches, decoding ahead while the caller works.

        The prompts of every batch are split into decoder jobs that the worker threads take in
        order, with no barrier between batches: while the caller handles one batch, the workers
        decode the next ``ahead`` ones (a batch is read from ``batches`` when its jobs are
        queued). Closing the iterator early cancels the jobs not yet started.

        Parameters
        ----------
        batches : iterable of (points_rc, negatives_rc)
            Arguments of :meth:`predict`, one pair per batch.
        ahead : int
            Batches queued for the workers beyond the one the caller handles (at least 1).

        Yields
        ------
        Candidates
            One per batch, in order.
        """
        if self._features is None:
            raise RuntimeError("set_image must be called before predicting masks")
        torch = self._mods.torch
        workers = self.workers if self.workers is not None else torch.get_num_threads()
        workers = max(1, workers) if self.device == "cpu" else 1
        saved = torch.get_num_threads()
        # intra-op threads of each worker thread: one when several decode in parallel, else
        # the caller's setting (a new thread does not inherit it)
        threads = 1 if workers > 1 else saved

        def decode(job) -> None:
            rows, c, lab, logits_out, iou_out = job
            torch.set_num_threads(threads)
            low, iou = self._decode(c, lab)
            logits_out[rows] = low
            iou_out[rows] = iou

        todo = iter(batches)
        queued: deque = deque()  # (logits, IoUs, futures) of the batches handed to the workers
        pool = ThreadPoolExecutor(workers, thread_name_prefix="sam2-decode")
        try:

            def queue_next() -> None:
                batch = next(todo, None)
                if batch is not None:
                    logits, iou, jobs = self._plan(*batch, workers)
                    queued.append((logits, iou, [pool.submit(decode, job) for job in jobs]))

            for _ in range(max(1, int(ahead))):
                queue_next()
            while queued:
                logits, iou, futures = queued.popleft()
                for f in futures:
                    f.result()
                queue_next()
                yield Candidates(logits=logits, iou=iou, image_shape=self._image_shape)
        finally:  # also when closed early: drop the jobs not started, wait for the running ones
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(saved)

    def _plan(self, points_rc, negatives_rc, workers: int):
        """Check one batch: its output arrays (logits, IoUs) and the decoder jobs filling them."""
        pts = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
        b = pts.shape[0]
        if negatives_rc is None:
            negatives_rc = [np.zeros((0, 2))] * b
        if len(negatives_rc) != b:
            raise ValueError(f"need one negatives array per point: {len(negatives_rc)} for {b}")
        negs = [np.asarray(g, dtype=np.float64).reshape(-1, 2) for g in negatives_rc]
        side = 4 * int(self._features["image_embed"].shape[-1])
        logits_out = np.empty((b, 3, side, side), dtype=np.float32)
        iou_out = np.empty((b, 3), dtype=np.float32)
        # SAM2 does not mask padding ("not a point") tokens out of attention, so prompts are
        # batched only with prompts of the same length: results equal one-by-one decoding.
        counts = np.array([g.shape[0] for g in negs], dtype=np.int64)
        jobs = []
        for k in np.unique(counts):
            members = np.flatnonzero(counts == k)
            rc = np.empty((members.size, 1 + k, 2))
            rc[:, 0] = pts[members]
            for row, i in enumerate(members):
                rc[row, 1:] = negs[i]
            labels = np.zeros((members.size, 1 + k), dtype=np.int32)
            labels[:, 0] = 1
            coords = self.prompt_coordinates(rc)
            # jobs of nearly equal sizes, a multiple of the workers in number when possible
            n_jobs = -(-members.size // self.batch_size)
            n_jobs = min(members.size, -(-n_jobs // workers) * workers)
            bounds = [j * members.size // n_jobs for j in range(n_jobs + 1)]
            for start, stop in zip(bounds[:-1], bounds[1:]):
                jobs.append((members[start:stop], coords[start:stop], labels[start:stop],
                             logits_out, iou_out))
        return logits_out, iou_out, jobs
