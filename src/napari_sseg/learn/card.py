"""The model card: ``MODEL/card.json`` describes a saved survey model and checks its files.

A model folder holds ``card.json`` and the weights file(s) it lists with their SHA-256, so a
truncated or swapped file is found before it is used. The card records the classes, the
image channels and their normalisation, the feature settings, the training images and
settings, the validation scores and the library versions.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["CARD_NAME", "FORMAT", "FORMAT_VERSION", "ModelError", "read_card", "write_card",
           "file_digest", "library_versions", "check_files"]

CARD_NAME = "card.json"
FORMAT = "napari-sseg survey model"
FORMAT_VERSION = 1
KINDS = ("forest", "unet")


class ModelError(ValueError):
    """A model folder or file that cannot be used (missing, truncated, other version, mismatch)."""


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def library_versions(*extra: str) -> dict:
    """Versions of napari-sseg, numpy and the named extra modules that are importable."""
    import importlib
    import sys

    import numpy as np

    from .. import __version__

    out = {"napari_sseg": __version__, "numpy": np.__version__,
           "python": sys.version.split()[0]}
    for name in extra:
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:
            out[name] = None
    return out


def write_card(folder: str | os.PathLike, card: dict) -> Path:
    """Write ``card`` to ``folder/card.json`` atomically, adding the digests of its files.

    ``card["files"]`` lists the file names (in ``folder``) the model needs; their SHA-256 is
    recorded, so write the card after the files.
    """
    from ..io.atomic import atomic_write_json

    folder = Path(folder)
    card = dict(card)
    card["format"] = FORMAT
    card["format_version"] = FORMAT_VERSION
    card["files"] = {name: file_digest(folder / name) for name in card.get("files", {})}
    return atomic_write_json(folder / CARD_NAME, card)


def read_card(folder: str | os.PathLike, *, check: bool = True) -> dict:
    """Read and validate ``folder/card.json``.

    Parameters
    ----------
    folder : str or PathLike
        The model folder (or its ``card.json``).
    check : bool
        Also check that every listed file exists with its recorded digest.

    Raises
    ------
    ModelError
        Naming the file: no card, not JSON, another format or version, missing keys, or a
        listed file missing or changed (truncated, replaced, half-written).
    """
    folder = Path(folder)
    if folder.name == CARD_NAME and folder.is_file():
        folder = folder.parent
    path = folder / CARD_NAME
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such model folder")
    if not path.is_file():
        raise ModelError(f"{path}: missing; {folder} is not a napari-sseg model folder "
                         f"(train one with 'napari-sseg train')")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not a readable JSON card (truncated?): {exc}") from exc
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ModelError(f"{path}: not a napari-sseg survey model card "
                         f"(format {card.get('format') if isinstance(card, dict) else None!r})")
    version = card.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(f"{path}: card format version {version!r}; this napari-sseg reads "
                         f"version {FORMAT_VERSION} (retrain the model or use the napari-sseg "
                         f"version that wrote it: {card.get('versions', {}).get('napari_sseg')})")
    for key in ("kind", "classes", "channels", "files"):
        if key not in card:
            raise ModelError(f"{path}: the card has no {key!r}")
    if card["kind"] not in KINDS:
        raise ModelError(f"{path}: unknown model kind {card['kind']!r} (expected one of {KINDS})")
    if check:
        check_files(folder, card)
    return card


def check_files(folder: Path, card: dict) -> None:
    """Raise :class:`ModelError` unless every file of ``card`` has its recorded digest."""
    for name, digest in card["files"].items():
        f = folder / name
        if not f.is_file():
            raise ModelError(f"{f}: missing (listed in {folder / CARD_NAME})")
        if file_digest(f) != digest:
            raise ModelError(f"{f}: does not match the digest in {folder / CARD_NAME} "
                             f"(truncated, half-written or replaced); retrain or restore it")
