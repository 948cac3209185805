"""Mask proposers behind one small interface.

Only :mod:`napari_sseg.backends.sam2` imports torch or sam2, and only when a SAM2 backend is
actually requested: importing this package stays light.
"""

from __future__ import annotations

__all__ = ["resolve_backend"]


def resolve_backend(backend: str = "auto", **kwargs):
    """Return ``(proposer_or_None, description)`` for ``backend`` in {'auto', 'superpixel', 'sam2'}.

    Placeholder until the SAM2 backend lands: 'auto' and 'superpixel' run the weight-free
    expansion.
    """
    if backend in ("auto", "superpixel"):
        return None, "superpixel (no SAM2 checkpoint found)" if backend == "auto" else "superpixel"
    raise ValueError(f"backend {backend!r} is not available yet")
