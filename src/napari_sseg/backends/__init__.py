"""Mask proposers behind one small interface, and how a backend is chosen.

Only :mod:`napari_sseg.backends.sam2` imports torch or sam2, and only when a SAM2 backend is
actually built: importing this package stays light (numpy and the standard library).

Checkpoints are looked up, in this order (:func:`find_checkpoint`):

1. the explicit path (``--checkpoint``; a file, or a folder holding the model's file);
2. ``NAPARI_SSEG_CHECKPOINT`` (a file or folder), then ``NAPARI_SSEG_CHECKPOINT_DIR`` (a folder);
3. ``checkpoints/`` in the current folder, then in the source checkout holding this package;
4. the user cache folder: ``$XDG_CACHE_HOME/napari-sseg/checkpoints`` (default
   ``~/.cache/napari-sseg/checkpoints``), ``~/Library/Caches/napari-sseg/checkpoints`` on macOS,
   ``%LOCALAPPDATA%\\napari-sseg\\Cache\\checkpoints`` on Windows.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

from ..core.proposals import Candidates, MaskCrop, MaskProposer
from .base import CheckpointError

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "Candidates",
    "CheckpointError",
    "MaskCrop",
    "MaskProposer",
    "MODEL_FILES",
    "checkpoint_search_paths",
    "find_checkpoint",
    "resolve_backend",
    "user_checkpoint_dir",
]


BACKENDS = ("auto", "superpixel", "sam2")

#: SAM2.1 model name -> checkpoint file name (kept here so that lookups need no torch)
MODEL_FILES = {
    "tiny": "sam2.1_hiera_tiny.pt",
    "small": "sam2.1_hiera_small.pt",
    "base_plus": "sam2.1_hiera_base_plus.pt",
    "large": "sam2.1_hiera_large.pt",
}

HOW_TO_DOWNLOAD = (
    "Download it with `bash checkpoints/download_checkpoints.sh {model}` from a source checkout "
    "(see checkpoints/README.md), or fetch "
    "https://dl.fbaipublicfiles.com/segment_anything_2/092824/{file} into {cache}, then pass "
    "--checkpoint PATH or set NAPARI_SSEG_CHECKPOINT."
)


def _check_model(model: str) -> str:
    if model not in MODEL_FILES:
        raise ValueError(f"unknown SAM2 model {model!r}; choose one of {', '.join(MODEL_FILES)}")
    return MODEL_FILES[model]


def user_checkpoint_dir() -> Path:
    """The per-user folder where checkpoints are looked for (platform's cache folder)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "napari-sseg" / "Cache" / "checkpoints"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "napari-sseg" / "checkpoints"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-sseg" / "checkpoints"


def _source_checkout_dir() -> Path | None:
    """``checkpoints/`` of the source checkout holding this package (src layout), if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "checkpoints").is_dir():
            return parent / "checkpoints"
    return None


def checkpoint_search_paths(model: str = "tiny") -> list[Path]:
    """Candidate files for ``model``, in search order (explicit path not included)."""
    file_name = _check_model(model)
    out: list[Path] = []
    env_file = os.environ.get("NAPARI_SSEG_CHECKPOINT")
    if env_file:
        p = Path(env_file).expanduser()
        out.append(p / file_name if p.is_dir() else p)
    env_dir = os.environ.get("NAPARI_SSEG_CHECKPOINT_DIR")
    if env_dir:
        out.append(Path(env_dir).expanduser() / file_name)
    out.append(Path.cwd() / "checkpoints" / file_name)
    src = _source_checkout_dir()
    if src is not None:
        out.append(src / file_name)
    out.append(user_checkpoint_dir() / file_name)
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.absolute()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def find_checkpoint(
    model: str = "tiny", checkpoint: str | os.PathLike | None = None
) -> Path | None:
    """Find the SAM2.1 checkpoint file of ``model``.

    Parameters
    ----------
    model : {'tiny', 'small', 'base_plus', 'large'}
    checkpoint : path-like, optional
        Explicit file, or folder holding the model's file; it must exist.

    Returns
    -------
    Path or None
        The first existing file in the search order of this module, None when there is none.

    Raises
    ------
    FileNotFoundError
        If an explicit ``checkpoint`` is given and does not exist.
    ValueError
        If ``model`` is unknown.
    """
    file_name = _check_model(model)
    if checkpoint is not None:
        p = Path(checkpoint).expanduser()
        if p.is_dir():
            p = p / file_name
        if not p.is_file():
            raise FileNotFoundError(f"SAM2 checkpoint {p} does not exist")
        return p
    for p in checkpoint_search_paths(model):
        try:
            if p.is_file():
                return p
        except PermissionError:  # a cache folder this user may not read (HOME of another user)
            log.debug("cannot look for a checkpoint at %s: permission denied", p)
    return None


def _sam2_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "sam2"))


def resolve_backend(
    backend: str = "auto",
    *,
    model: str = "tiny",
    device: str = "auto",
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """Choose and build the mask proposer.

    Parameters
    ----------
    backend : {'auto', 'superpixel', 'sam2'}
        'auto' uses SAM2 when a checkpoint is found (and torch/sam2 are installed), the
        weight-free superpixel expansion otherwise.
    model : {'tiny', 'small', 'base_plus', 'large'}
    device : {'auto', 'cpu', 'cuda', 'mps'}
    checkpoint : path-like, optional
        Explicit checkpoint file (or folder).
    cache_dir : path-like, optional
        Folder for SAM2 image embeddings on disk.

    Returns
    -------
    proposer : MaskProposer or None
        None for the superpixel expansion.
    description : str
        What was chosen and why (for logs and run records).

    Raises
    ------
    ValueError
        Unknown backend, model or device.
    FileNotFoundError
        'sam2' without a checkpoint, or an explicit checkpoint that does not exist.
    ImportError
        'sam2' without torch/sam2 installed.
    CheckpointError
        The checkpoint found is truncated, corrupted or for another model.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise ValueError(f"device must be one of auto, cpu, cuda, mps; got {device!r}")
    file_name = _check_model(model)
    if backend == "superpixel":
        return None, "superpixel (weight-free superpixel expansion)"
    path = find_checkpoint(model, checkpoint)
    if path is None:
        if backend == "auto":
            desc = (f"superpixel (no SAM2.1 {model} checkpoint {file_name} found in "
                    f"--checkpoint, NAPARI_SSEG_CHECKPOINT, checkpoints/ or "
                    f"{user_checkpoint_dir()})")
            return None, desc
        raise FileNotFoundError(
            f"--backend sam2 needs the SAM2.1 {model} checkpoint {file_name}, found nowhere "
            f"(searched: {', '.join(str(p) for p in checkpoint_search_paths(model))}). "
            + HOW_TO_DOWNLOAD.format(model=model, file=file_name, cache=user_checkpoint_dir())
        )
    if not _sam2_installed():
        if backend == "auto":
            return None, (f"superpixel (SAM2 checkpoint {path} found but torch/sam2 are not "
                          "installed: pip install 'napari-sseg[sam2]')")
        raise ImportError("--backend sam2 needs torch and sam2: pip install 'napari-sseg[sam2]'")
    from .sam2 import SAM2Proposer

    proposer = SAM2Proposer(model, checkpoint=path, device=device, cache_dir=cache_dir)
    return proposer, f"sam2 ({proposer.name})"
