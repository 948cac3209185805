"""Long work as generators that yield :class:`Progress` and return results.

The CLI drives them with tqdm, the napari widget inside a thread worker.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from .expand import ExpandOptions, Expansion, iter_expand
from .points import PointSet
from .progress import Progress

__all__ = ["iter_expand_image"]


def iter_expand_image(
    image: np.ndarray,
    points: PointSet,
    *,
    proposer=None,
    corrections: np.ndarray | None = None,
    options: ExpandOptions | None = None,
    prior_proba: np.ndarray | None = None,
    prior_classes: np.ndarray | None = None,
) -> Generator[Progress, None, Expansion]:
    """Expand the points of one image with the chosen method.

    Parameters
    ----------
    image : (M, N[, C]) ndarray
    points : PointSet
    proposer : MaskProposer, optional
        A mask proposer (see :mod:`napari_sseg.backends`); ``None`` runs the weight-free
        superpixel expansion alone.
    corrections : (M, N) ndarray of int, optional
        Painted pixels (class id; 255 for uint8, 65535 for uint16 = not painted), kept exactly
        and used as evidence (see :mod:`napari_sseg.core.corrections`).
    options : ExpandOptions, optional
        Settings of the superpixel expansion / fill.
    prior_proba, prior_classes : optional
        A survey model's class probabilities (and their class ids) as a third expert of the
        superpixel expansion or fill (see :func:`~napari_sseg.core.expand.expand`).
    """
    prior = {"prior_proba": prior_proba, "prior_classes": prior_classes}
    if proposer is None:
        result = yield from iter_expand(image, points, corrections=corrections, options=options,
                                        **prior)
        return result
    from .fusion import iter_hybrid_expand

    result = yield from iter_hybrid_expand(image, points, proposer, corrections=corrections,
                                           options=options, **prior)
    return result
