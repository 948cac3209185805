"""The mask-proposer interface, as the backends see it.

The protocol and its types live in :mod:`napari_sseg.core.proposals` (the core defines what it
needs, the backends implement it); they are re-exported here so that older imports keep
working. :class:`CheckpointError` belongs to the backends.
"""

from __future__ import annotations

from ..core.proposals import (
    Candidates,
    MaskCrop,
    MaskProposer,
    iter_candidates,
    sample_grid,
    upsample_crop,
)

__all__ = [
    "Candidates",
    "CheckpointError",
    "MaskCrop",
    "MaskProposer",
    "iter_candidates",
    "sample_grid",
    "upsample_crop",
]


class CheckpointError(RuntimeError):
    """A model checkpoint is missing, truncated, corrupted or made for another model."""
