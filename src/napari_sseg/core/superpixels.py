"""Superpixel helpers: SLIC / maskSLIC at a working resolution, region graphs and statistics."""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2lab
from skimage.segmentation import slic

__all__ = [
    "block_mean",
    "colour_features",
    "slic_superpixels",
    "region_adjacency",
    "region_means",
    "relabel_sequential",
]


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Downsample the first two axes by an integer ``factor`` with block averaging (edge padded)."""
    if factor <= 1:
        return image
    m, n = image.shape[:2]
    pm, pn = (-m) % factor, (-n) % factor
    if pm or pn:
        pad = [(0, pm), (0, pn)] + [(0, 0)] * (image.ndim - 2)
        image = np.pad(image, pad, mode="edge")
    mm, nn = image.shape[0] // factor, image.shape[1] // factor
    shape = (mm, factor, nn, factor) + image.shape[2:]
    return image.reshape(shape).mean(axis=(1, 3), dtype=np.float32)


def colour_features(image: np.ndarray, *, contrast: float = 20.0) -> np.ndarray:
    """Perceptual features of a (M, N, C) float image in [0, 1], roughly on a 0..100 scale.

    Three channels are treated as RGB and converted to CIELAB; other channel counts are scaled
    to 0..100 as they are. The result is then scaled so that its total standard deviation is
    ``contrast``, which makes SLIC's compactness mean the same thing on every image.
    """
    if image.shape[2] == 3:
        feats = rgb2lab(np.clip(image, 0, 1)).astype(np.float32)
    else:
        feats = (image * np.float32(100)).astype(np.float32)
    # Dark or low-contrast images (underwater photos, faint micrographs) would make SLIC's
    # compactness dominate and yield a square grid: stretch the features to a common contrast.
    step = max(1, feats.shape[0] * feats.shape[1] // 100_000)
    sample = feats.reshape(-1, feats.shape[2])[::step]
    spread = float(np.sqrt((sample.var(axis=0)).sum()))
    if spread > 1e-6:
        feats *= np.float32(contrast / spread)
    return feats


def slic_superpixels(
    features: np.ndarray,
    *,
    n_segments: int,
    compactness: float = 10.0,
    mask: np.ndarray | None = None,
    downsample: int = 1,
    iterations: int = 10,
) -> np.ndarray:
    """SLIC superpixels, confined to ``mask`` when one is given (maskSLIC).

    Parameters
    ----------
    features : (M, N, C) ndarray of float32
        Features on a CIELAB-like 0..100 scale.
    n_segments : int
        Approximate number of superpixels over the whole image.
    compactness : float
        SLIC compactness. scikit-image rescales the features to [0, 1] by their overall range
        before segmenting, so the compactness acts on that scale: the default 10 gives nearly
        regular regions, about 0.1 colour-adherent ones. The expansion and the suggestions
        are tuned with nearly regular regions: adherent ones, with another choice of the
        expansion's weights, raised the expansion's mIoU on coral but made the suggestions
        worse than random points, so the two need retuning together.
    mask : (M, N) ndarray of bool, optional
        Only pixels where ``mask`` is True are segmented; others get 0.
    downsample : int
        Segment the features block-averaged by this factor and scale the superpixels back up:
        about ``1 / downsample**2`` of the cost, for superpixels much larger than a block.
    iterations : int
        Most k-means iterations (scikit-image's ``max_num_iter``). Nearly regular superpixels
        settle in a few: the expansion uses 5, which halves the cost of its main segmentation
        and changed its benchmark mIoU by at most 0.3 points.

    Returns
    -------
    (M, N) ndarray of int32
        Superpixel ids starting at 1, 0 outside the mask.

    Notes
    -----
    scikit-image's ``slic(..., mask=...)`` places its seeds with k-means over the mask, which
    costs O(n_segments^2): 3.4 s for 1750 superpixels on a 512 x 512 image against 0.2 s for
    plain SLIC (measured here). Superpixels confined to the mask are obtained at plain-SLIC cost
    by segmenting the whole image and cutting every superpixel at the mask boundary into its
    connected pieces inside the mask.
    """
    m, n = features.shape[:2]
    seg = slic(
        block_mean(features, downsample),
        n_segments=max(1, int(n_segments)),
        compactness=compactness,
        channel_axis=-1,
        convert2lab=False,
        start_label=1,
        enforce_connectivity=True,
        max_num_iter=iterations,
    ).astype(np.int32, copy=False)
    if downsample > 1:
        seg = np.repeat(np.repeat(seg, downsample, axis=0), downsample, axis=1)[:m, :n]
    if mask is None:
        return seg
    if not mask.any():
        return np.zeros(seg.shape, dtype=np.int32)
    return _cut_at_mask(seg, mask)


def _cut_at_mask(seg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero ``seg`` outside ``mask`` and split each superpixel into its connected pieces inside."""
    inside = np.where(mask, seg, 0)
    # two pixels are joined when 4-adjacent, both inside and of the same superpixel
    m, n = seg.shape
    idx = np.arange(m * n).reshape(m, n)
    pairs = []
    for a, b in ((inside[:, :-1], inside[:, 1:]), (inside[:-1, :], inside[1:, :])):
        same = (a == b) & (a > 0)
        ia = idx[: a.shape[0], : a.shape[1]][same]
        ib = (idx[:, 1:] if a.shape[1] < n else idx[1:, :])[same]
        pairs.append((ia, ib))
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([p[0] for p in pairs])
    cols = np.concatenate([p[1] for p in pairs])
    graph = coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(m * n, m * n))
    _, comp = connected_components(graph, directed=False)
    out = np.zeros(m * n, dtype=np.int32)
    flat_inside = mask.ravel()
    _, out[flat_inside] = np.unique(comp[flat_inside], return_inverse=True)
    out[flat_inside] += 1
    return out.reshape(m, n)


def relabel_sequential(seg: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel positive ids to 0..K-1 (non-positive ids become -1); returns (ids, K)."""
    ids = np.unique(seg[seg > 0])
    lut = np.full(int(seg.max()) + 1 if seg.size else 1, -1, dtype=np.int32)
    lut[ids] = np.arange(ids.size, dtype=np.int32)
    out = np.where(seg > 0, lut[np.maximum(seg, 0)], -1).astype(np.int32)
    return out, int(ids.size)


def region_adjacency(regions: np.ndarray, n_regions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of 4-connected touching regions and the length of their shared border.

    Parameters
    ----------
    regions : (M, N) ndarray of int
        Region ids 0..n_regions-1 (negative ids are ignored).

    Returns
    -------
    a, b : (E,) ndarray of int64
        Region pairs with ``a < b``.
    length : (E,) ndarray of float64
        Number of pixel edges between the two regions.
    """
    keys = []
    for x, y in ((regions[:, :-1], regions[:, 1:]), (regions[:-1, :], regions[1:, :])):
        diff = (x != y) & (x >= 0) & (y >= 0)
        lo = np.minimum(x[diff], y[diff]).astype(np.int64)
        hi = np.maximum(x[diff], y[diff]).astype(np.int64)
        keys.append(lo * n_regions + hi)
    if not keys or sum(k.size for k in keys) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    uniq, counts = np.unique(np.concatenate(keys), return_counts=True)
    return uniq // n_regions, uniq % n_regions, counts.astype(np.float64)


def region_means(regions: np.ndarray, values: np.ndarray, n_regions: int) -> np.ndarray:
    """Mean of each channel of ``values`` (M, N, C) per region; returns (n_regions, C)."""
    flat = regions.reshape(-1)
    valid = flat >= 0
    idx = flat[valid]
    counts = np.bincount(idx, minlength=n_regions).astype(np.float64)
    counts[counts == 0] = 1
    vals = values.reshape(-1, values.shape[-1])[valid]
    out = np.empty((n_regions, values.shape[-1]), dtype=np.float64)
    for c in range(values.shape[-1]):
        out[:, c] = np.bincount(idx, weights=vals[:, c], minlength=n_regions) / counts
    return out
