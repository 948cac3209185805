"""Region hierarchy: fine superpixels merged into coarser regions, cut at any granularity.

The image is block-averaged to a working resolution and over-segmented into fine, colour-adherent
SLIC superpixels. Their region adjacency graph is merged bottom-up into a binary partition tree
(Higra) with a Ward-like linkage: the cost of merging two regions is the increase of a
within-region energy, ``n_a n_b / (n_a + n_b)`` times a squared distance between the regions that
sees colour (mean CIELAB), texture (within-region standard deviation of every channel and mean
local gradient energy) and boundaries (mean contrast across the shared border). The size factor
merges small fragments first, so a cut at K regions has regions of balanced size that follow
edges. A cut takes the tree after all but its last ``K - 1`` merges, so it has exactly K regions
(fewer only when the finest partition has fewer) and every cut is nested in every coarser one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi

from .image import as_channels, normalized_float
from .superpixels import block_mean, colour_features, slic_superpixels

__all__ = [
    "RegionHierarchy",
    "region_hierarchy",
    "cut",
    "cut_nodes",
    "default_fine_count",
    "coarser_at",
    "finer_at",
    "labels_from_nodes",
    "n_regions_at_level",
    "achievable_accuracy",
    "boundary_recall",
    "region_boundaries",
]


@dataclass(frozen=True, eq=False)
class RegionHierarchy:
    """A binary partition tree over the fine superpixels of an image.

    Attributes
    ----------
    fine : (h, w) ndarray of int32
        Fine superpixel ids 0..n_fine-1 at the working resolution.
    parents : (2 n_fine - 1,) ndarray of int64
        Parent of every tree node. Nodes 0..n_fine-1 are the fine superpixels; node
        ``n_fine + i`` is made by the i-th merge, the root (last node) is its own parent.
    shape : tuple of int
        Spatial shape of the full-resolution image.
    factor : int
        Block size of the working resolution (1: full resolution).
    """

    fine: np.ndarray
    parents: np.ndarray
    shape: tuple[int, ...]
    factor: int

    @property
    def n_fine(self) -> int:
        """Number of regions of the finest partition."""
        return int(self.parents.size + 1) // 2

    @property
    def n_pixels(self) -> int:
        """Number of pixels of the full-resolution image."""
        return int(np.prod(self.shape))

    @cached_property
    def _leaf_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fine regions in depth-first order, and each node's first position and leaf count.

        The fine regions under node ``v`` are ``order[start[v]:start[v] + count[v]]``.
        """
        k, parents = self.n_fine, self.parents
        count = np.zeros(parents.size, dtype=np.int64)
        count[:k] = 1
        children = np.argsort(parents[:-1], kind="stable").reshape(-1, 2)  # node k + i: row i
        for i, (a, b) in enumerate(children.tolist()):
            count[k + i] = count[a] + count[b]
        start = np.zeros(parents.size, dtype=np.int64)
        for i in range(children.shape[0] - 1, -1, -1):  # parents before their children
            a, b = children[i]
            start[a] = start[k + i]
            start[b] = start[k + i] + count[a]
        order = np.empty(k, dtype=np.int64)
        order[start[:k]] = np.arange(k)
        return order, start, count

    def leaves(self, node: int) -> np.ndarray:
        """Fine region ids under tree node ``node``."""
        order, start, count = self._leaf_ranges
        return order[start[node]:start[node] + count[node]]

    def children(self, node: int) -> tuple[int, ...]:
        """The two nodes merged into ``node`` (none for a fine region)."""
        k = self.n_fine
        if node < k:
            return ()
        kids = np.flatnonzero(self.parents[:-1] == node)
        return tuple(int(v) for v in kids)

    def fine_at(self, row: float, col: float) -> int:
        """Fine region id at full-resolution pixel (row, col) (clipped into the image)."""
        r = int(np.clip(int(row), 0, self.shape[0] - 1)) // self.factor
        c = int(np.clip(int(col), 0, self.shape[1] - 1)) // self.factor
        return int(self.fine[min(r, self.fine.shape[0] - 1), min(c, self.fine.shape[1] - 1)])


def region_hierarchy(
    image: np.ndarray,
    *,
    n_fine: int | None = None,
    max_work_pixels: int = 1_500_000,
    fine_compactness: float = 0.3,
    texture_weight: float = 1.0,
    boundary_weight: float = 1.0,
    size_exponent: float = 1.0,
    spatial_weight: float = 3.0,
) -> RegionHierarchy:
    """Build the region hierarchy of a 2D image.

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray
        Grey, RGB, RGBA (alpha ignored) or channel-last multichannel image; NaN pixels count as
        the darkest value.
    n_fine : int, optional
        Regions of the finest partition; by default one per 30 working pixels, between 2000
        and 6000 (cuts up to that many regions are possible; cost grows with it).
    max_work_pixels : int
        The image is block-averaged to at most about this many pixels before segmentation;
        cuts are brought back to full resolution by repeating the blocks.
    fine_compactness : float
        SLIC compactness of the fine superpixels (scikit-image's rescaled scale: 10 nearly
        regular, 0.1 very colour-adherent).
    texture_weight, boundary_weight : float
        Weights of the texture and border-contrast distances against the colour distance.
    size_exponent : float
        Exponent of the size factor of the merge cost (1: Ward).
    spatial_weight : float
        Weight of the distance between region centroids (in units of the image's side, against
        colour on a 0..100 scale): larger values give rounder regions.

    Returns
    -------
    RegionHierarchy

    Raises
    ------
    ValueError
        If the image is not 2D (with optional channels), is smaller than 2 x 2 or has no
        numeric dtype, or ``n_fine`` is below 2.
    """
    arr = as_channels(image)
    m, n = arr.shape[:2]
    factor = max(1, int(np.ceil(np.sqrt(m * n / max(1, max_work_pixels)))))
    # block-average the raw pixels first, so a large image is never held as float
    if arr.dtype == np.uint8:
        small = block_mean(arr, factor).astype(np.float32) * np.float32(1 / 255)
    else:
        small = normalized_float(block_mean(arr, factor))
    feats = colour_features(small)
    h, w = feats.shape[:2]
    if n_fine is None:
        n_fine = _default_fine(h * w)
    if n_fine < 2:
        raise ValueError(f"n_fine must be at least 2, got {n_fine}")
    n_fine = min(int(n_fine), h * w)
    fine = slic_superpixels(feats, n_segments=n_fine, compactness=fine_compactness) - 1
    fine = _relabel(fine)
    k = int(fine.max()) + 1
    if k < 2:
        parents = np.zeros(1, dtype=np.int64)
        return RegionHierarchy(fine=fine, parents=parents, shape=(m, n), factor=factor)
    parents = _merge_tree(fine, k, feats, texture_weight=texture_weight,
                          boundary_weight=boundary_weight, size_exponent=size_exponent,
                          spatial_weight=spatial_weight)
    return RegionHierarchy(fine=fine, parents=parents, shape=(m, n), factor=factor)


def _default_fine(work_pixels: int) -> int:
    return int(np.clip(work_pixels / 30, 2000, 6000))


def default_fine_count(shape: tuple[int, int], *, max_work_pixels: int = 1_500_000) -> int:
    """Regions of the finest partition :func:`region_hierarchy` makes by default for an image
    of spatial ``shape`` (before SLIC's own rounding)."""
    m, n = shape
    factor = max(1, int(np.ceil(np.sqrt(m * n / max(1, max_work_pixels)))))
    return _default_fine(-(-m // factor) * -(-n // factor))


def _relabel(seg: np.ndarray) -> np.ndarray:
    """Ids 0..K-1 in order of first appearance in the sorted unique ids (int32)."""
    _, inv = np.unique(seg, return_inverse=True)
    return inv.reshape(seg.shape).astype(np.int32)


def _pixel_pairs(seg: np.ndarray):
    """(first, second) flat pixel indices of all 4-adjacent pixel pairs with different ids."""
    h, w = seg.shape
    idx = np.arange(h * w).reshape(h, w)
    out = []
    for a, b, ia, ib in ((seg[:, :-1], seg[:, 1:], idx[:, :-1], idx[:, 1:]),
                         (seg[:-1, :], seg[1:, :], idx[:-1, :], idx[1:, :])):
        diff = a != b
        out.append((ia[diff], ib[diff]))
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def _merge_tree(fine, k, feats, *, texture_weight, boundary_weight, size_exponent,
                spatial_weight):
    """Binary partition tree of the fine regions with the Ward-like linkage (parents array)."""
    h, w, c = feats.shape
    flat = fine.ravel()
    # texture: local gradient energy of the (lightly smoothed) features
    smooth = ndi.gaussian_filter(feats, (1.0, 1.0, 0))
    gr = np.zeros((h, w), dtype=np.float32)
    for ch in range(c):
        gy, gx = np.gradient(smooth[:, :, ch])
        gr += gy * gy + gx * gx
    grad = np.sqrt(gr)
    side = np.sqrt(h * w)
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32) / np.float32(side)
    chans = np.concatenate([feats, grad[:, :, None], rr[:, :, None], cc[:, :, None]], axis=2)
    chans = chans.reshape(-1, c + 3).astype(np.float64)
    size = np.bincount(flat, minlength=k).astype(np.float64)
    s1 = np.stack([np.bincount(flat, weights=chans[:, j], minlength=k) for j in range(c + 3)], 1)
    s2 = np.stack([np.bincount(flat, weights=chans[:, j] ** 2, minlength=k)
                   for j in range(c)], 1)
    # region adjacency with the border length and summed contrast across the border
    pa, pb = _pixel_pairs(fine)
    ra, rb = flat[pa], flat[pb]
    lo, hi = np.minimum(ra, rb).astype(np.int64), np.maximum(ra, rb).astype(np.int64)
    key = lo * k + hi
    sf = smooth.reshape(-1, c)
    contrast = np.sqrt(((sf[pa] - sf[pb]) ** 2).sum(axis=1))
    ukey, inv = np.unique(key, return_inverse=True)
    ea, eb = ukey // k, ukey % k
    n_edges = ukey.size
    blen = np.bincount(inv, minlength=n_edges).astype(np.float64)
    bsum = np.bincount(inv, weights=contrast, minlength=n_edges)
    return _agglomerate(k, ea, eb, blen, bsum, size, s1, s2, texture_weight=texture_weight,
                        boundary_weight=boundary_weight, size_exponent=size_exponent,
                        spatial_weight=spatial_weight)


def _agglomerate(k, ea, eb, blen, bsum, size, s1, s2, *, texture_weight, boundary_weight,
                 size_exponent, spatial_weight):
    """Greedy bottom-up merging of the region adjacency graph (a binary partition tree).

    Every step merges the adjacent pair of least cost (ties: lowest node ids), the new region
    gets the next node id and the costs to its neighbours are recomputed from the merged
    region's exact statistics (sums and sums of squares) and the summed border statistics.
    """
    import heapq

    c = s2.shape[1]
    n_nodes = 2 * k - 1
    nsz = np.zeros(n_nodes)
    S1 = np.zeros((n_nodes, c + 3))
    S2 = np.zeros((n_nodes, c))
    nsz[:k], S1[:k], S2[:k] = size, s1, s2
    # mean features, texture (std, gradient energy), centroid
    desc = np.zeros((n_nodes, 2 * c + 3))
    wt, wb, alpha = float(texture_weight), float(boundary_weight), float(size_exponent)
    tex_scale = np.sqrt(wt)
    spatial_scale = 20.0 * float(spatial_weight)

    def describe(nodes):
        nn = nsz[nodes][:, None]
        m1 = S1[nodes] / nn
        desc[nodes, :c] = m1[:, :c]
        desc[nodes, c:2 * c] = tex_scale * np.sqrt(np.maximum(S2[nodes] / nn - m1[:, :c] ** 2, 0))
        desc[nodes, 2 * c] = tex_scale * m1[:, c]
        desc[nodes, 2 * c + 1:] = spatial_scale * m1[:, c + 1:]

    def cost(a, b, length, contrast):
        na, nb = nsz[a], nsz[b]
        d2 = ((desc[a] - desc[b]) ** 2).sum(-1) + wb * (contrast / length) ** 2
        return (na * nb / (na + nb)) ** alpha * d2

    describe(np.arange(k))
    w0 = cost(ea, eb, blen, bsum)
    nbrs: list[dict] = [dict() for _ in range(n_nodes)]
    for a, b, length, contrast in zip(ea.tolist(), eb.tolist(), blen.tolist(), bsum.tolist()):
        nbrs[a][b] = nbrs[b][a] = (length, contrast)
    heap = list(zip(w0.tolist(), ea.tolist(), eb.tolist()))
    heapq.heapify(heap)
    alive = np.zeros(n_nodes, dtype=bool)
    alive[:k] = True
    parents = np.arange(n_nodes, dtype=np.int64)
    new = k
    while new < n_nodes:
        if not heap:  # a disconnected graph: join the remaining parts in id order
            rest = np.flatnonzero(alive)
            a, b = int(rest[0]), int(rest[1])
        else:
            _, a, b = heapq.heappop(heap)
            if not (alive[a] and alive[b]):
                continue
        r = new
        new += 1
        parents[a] = parents[b] = r
        alive[a] = alive[b] = False
        alive[r] = True
        nsz[r] = nsz[a] + nsz[b]
        S1[r] = S1[a] + S1[b]
        S2[r] = S2[a] + S2[b]
        describe(np.array([r]))
        na, nb = nbrs[a], nbrs[b]
        nbrs[a] = nbrs[b] = {}
        merged = {}
        for side in (na, nb):
            for other, (length, contrast) in side.items():
                if other == a or other == b:
                    continue
                if other in merged:
                    l0, c0 = merged[other]
                    merged[other] = (l0 + length, c0 + contrast)
                else:
                    merged[other] = (length, contrast)
        nbrs[r] = merged
        if not merged:
            continue
        others = np.fromiter(merged.keys(), dtype=np.int64, count=len(merged))
        lc = np.array(list(merged.values()))
        costs = cost(r, others, lc[:, 0], lc[:, 1])
        for other, w in zip(others.tolist(), costs.tolist()):
            d = nbrs[other]
            d.pop(a, None)
            d.pop(b, None)
            d[r] = merged[other]
            heapq.heappush(heap, (w, other, r) if other < r else (w, r, other))
    return parents


def n_regions_at_level(hierarchy: RegionHierarchy, level: float) -> int:
    """Number of regions of the cut at ``level`` in [0, 1] (0: finest, 1: one region).

    The count falls geometrically with the level, so equal slider steps change the region
    size by equal factors.
    """
    if not 0.0 <= level <= 1.0 or not np.isfinite(level):
        raise ValueError(f"level must be between 0 (finest) and 1 (one region), got {level}")
    return max(1, int(round(hierarchy.n_fine ** (1.0 - float(level)))))


def cut_nodes(hierarchy: RegionHierarchy, n_regions: int) -> np.ndarray:
    """Tree node of every fine region in the cut with ``n_regions`` regions.

    Returns
    -------
    (n_fine,) ndarray of int64
        The node (region) of the cut that holds each fine superpixel.
    """
    parents = hierarchy.parents
    k = hierarchy.n_fine
    n_regions = int(np.clip(n_regions, 1, k))
    # nodes made by the first k - n_regions merges are in the cut's regions
    limit = 2 * k - n_regions
    nodes = np.arange(parents.size)
    up = np.where(parents < limit, parents, nodes)
    up[parents == nodes] = nodes[parents == nodes]
    while True:  # pointer jumping: every node to the highest merged ancestor below ``limit``
        nxt = up[up]
        if np.array_equal(nxt, up):
            break
        up = nxt
    return up[:k]


def cut(
    hierarchy: RegionHierarchy,
    *,
    n_regions: int | None = None,
    level: float | None = None,
    full_resolution: bool = True,
) -> np.ndarray:
    """Region label image of one cut of the hierarchy.

    Parameters
    ----------
    hierarchy : RegionHierarchy
    n_regions : int, optional
        Number of regions wanted (at least 2, at most the number of pixels); the cut has
        exactly that many when the finest partition has as many, else the finest partition.
    level : float, optional
        Instead of ``n_regions``: 0 (finest) to 1 (coarsest), see :func:`n_regions_at_level`.
    full_resolution : bool
        Return the labels at the image's size (default) or at the working resolution.

    Returns
    -------
    (M, N) ndarray of int32
        Region ids 1..K, consecutive, in the order of their tree nodes.

    Raises
    ------
    ValueError
        If neither or both of ``n_regions`` and ``level`` are given, or they are out of range.
    """
    if (n_regions is None) == (level is None):
        raise ValueError("give exactly one of n_regions and level")
    if level is not None:
        n_regions = n_regions_at_level(hierarchy, level)
    else:
        if isinstance(n_regions, bool) or not float(n_regions).is_integer():
            raise ValueError(f"n_regions must be a whole number, got {n_regions!r}")
        n_regions = int(n_regions)
        if n_regions < 2:
            raise ValueError(f"n_regions must be at least 2, got {n_regions}")
        if n_regions > hierarchy.n_pixels:
            raise ValueError(
                f"n_regions={n_regions} exceeds the image's {hierarchy.n_pixels} pixels")
    return labels_from_nodes(hierarchy, cut_nodes(hierarchy, n_regions),
                             full_resolution=full_resolution)


def labels_from_nodes(hierarchy: RegionHierarchy, nodes: np.ndarray, *,
                      full_resolution: bool = True) -> np.ndarray:
    """Region label image (ids 1..K, in node order) of a partition given as the tree node of
    every fine region (:func:`cut_nodes`, possibly refined by :func:`coarser_at` /
    :func:`finer_at`)."""
    _, lut = np.unique(nodes, return_inverse=True)
    return labels_from_lut(hierarchy, (lut + 1).astype(np.int32),
                           full_resolution=full_resolution)


def coarser_at(hierarchy: RegionHierarchy, nodes: np.ndarray, fine_id: int) -> np.ndarray:
    """The partition ``nodes`` with the region holding fine region ``fine_id`` replaced by its
    parent in the tree (it absorbs the regions its parent covers); a new array."""
    out = np.array(nodes, copy=True)
    node = int(out[fine_id])
    parent = int(hierarchy.parents[node])
    if parent != node:
        out[hierarchy.leaves(parent)] = parent
    return out


def finer_at(hierarchy: RegionHierarchy, nodes: np.ndarray, fine_id: int) -> np.ndarray:
    """The partition ``nodes`` with the region holding fine region ``fine_id`` split into the
    two regions it was merged from (a fine region stays as it is); a new array."""
    out = np.array(nodes, copy=True)
    for child in hierarchy.children(int(out[fine_id])):
        out[hierarchy.leaves(child)] = child
    return out


def labels_from_lut(hierarchy: RegionHierarchy, lut: np.ndarray, *,
                    full_resolution: bool = True) -> np.ndarray:
    """Pixel image of a value per fine region (``lut[fine]``), at full or working resolution."""
    small = lut[hierarchy.fine]
    f = hierarchy.factor
    if f == 1 or not full_resolution:
        return small
    m, n = hierarchy.shape
    hs, ws = small.shape
    # repeat every working pixel into an f x f block (a broadcast copy: 3x faster than indexing)
    return np.broadcast_to(small[:, None, :, None], (hs, f, ws, f)).reshape(hs * f, ws * f)[:m, :n]


def region_boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower 4-neighbour has another id (a one-pixel-wide boundary)."""
    b = np.zeros(labels.shape, dtype=bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b


def achievable_accuracy(regions: np.ndarray, truth: np.ndarray, *, ignore: int = 255) -> float:
    """Achievable segmentation accuracy: each region takes its majority ground-truth class.

    Parameters
    ----------
    regions : (M, N) ndarray of int
        Region ids.
    truth : (M, N) ndarray of int
        Ground-truth classes (or region ids); ``ignore`` pixels are skipped.

    Returns
    -------
    float
        Fraction of scored pixels that the majority labelling gets right (NaN if none scored).
    """
    regions, truth = np.asarray(regions), np.asarray(truth)
    if regions.shape != truth.shape:
        raise ValueError(f"regions of shape {regions.shape} and truth of shape {truth.shape} differ")
    valid = truth != ignore
    if not valid.any():
        return float("nan")
    _, r = np.unique(regions[valid], return_inverse=True)
    _, g = np.unique(truth[valid], return_inverse=True)
    ng = int(g.max()) + 1
    counts = np.bincount(r.astype(np.int64) * ng + g, minlength=(int(r.max()) + 1) * ng)
    return float(counts.reshape(-1, ng).max(axis=1).sum() / valid.sum())


def boundary_recall(regions: np.ndarray, truth: np.ndarray, *, tolerance: int = 2,
                    ignore: int = 255) -> float:
    """Fraction of ground-truth boundary pixels within ``tolerance`` pixels (chessboard) of a
    region boundary; boundaries touching ``ignore`` pixels are not counted."""
    regions, truth = np.asarray(regions), np.asarray(truth)
    tb = region_boundaries(truth)
    ign = truth == ignore
    if ign.any():
        near_ign = ndi.binary_dilation(ign, iterations=1)
        tb &= ~near_ign
    if not tb.any():
        return float("nan")
    rb = region_boundaries(regions)
    if tolerance > 0:
        rb = ndi.binary_dilation(rb, structure=np.ones((3, 3), bool), iterations=tolerance)
    return float((tb & rb).sum() / tb.sum())
