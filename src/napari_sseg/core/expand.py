"""Weight-free expansion: class points (and optionally already-decided pixels) to dense labels.

The image is segmented into superpixels at a working resolution (maskSLIC inside the region still
to be labelled). Superpixels holding points, and connected regions already decided (for example by
SAM2 masks), are seeds of a graph whose edges join touching regions with a weight that falls with
their colour difference. Class probabilities are propagated over that graph with a random walk
(a Laplacian solve) regularised by a colour-space prior from the seeds, so that a region with no
point takes the class of the seeds it is connected to by similar-looking paths, or failing that the
class of the seeds it looks most like. Probabilities are brought back to full resolution and the
winning class and its probability (the confidence) are returned.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from .image import normalized_float
from .points import PointSet
from .progress import Progress, run_generator
from .superpixels import (
    block_mean,
    colour_features,
    region_adjacency,
    region_means,
    relabel_sequential,
    slic_superpixels,
)

__all__ = ["Expansion", "ExpandOptions", "iter_expand", "expand", "label_dtype"]


@dataclass
class Expansion:
    """Result of an expansion.

    Attributes
    ----------
    labels : (M, N) ndarray of uint8 / uint16 / int32
        Class id of every pixel.
    confidence : (M, N) ndarray of float32
        Probability of the chosen class, in [0, 1].
    info : dict
        Method, settings and timings.
    """

    labels: np.ndarray
    confidence: np.ndarray
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExpandOptions:
    """Settings of the weight-free expansion.

    Attributes
    ----------
    max_work_pixels : int
        The image is block-averaged to at most about this many pixels before segmentation.
    superpixel_size : float
        Mean superpixel area in working-resolution pixels.
    compactness : float
        SLIC compactness on the CIELAB-like scale.
    edge_beta : float
        Sharpness of the colour-difference edge weights.
    prior_weight : float
        Weight of the colour-space prior relative to the graph edges.
    """

    max_work_pixels: int = 400_000
    superpixel_size: float = 150.0
    compactness: float = 10.0
    edge_beta: float = 4.0
    prior_weight: float = 0.02


def label_dtype(max_label: int) -> np.dtype:
    """Smallest unsigned dtype for class ids up to ``max_label`` (uint8, uint16, else int32)."""
    if max_label < 256:
        return np.dtype(np.uint8)
    if max_label < 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def expand(
    image: np.ndarray,
    points: PointSet,
    *,
    known: np.ndarray | None = None,
    options: ExpandOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Expansion:
    """Label every pixel of ``image`` from class points.

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray
        Grey, RGB, RGBA (alpha ignored) or channel-last multichannel image.
    points : PointSet
        Labelled points in (row, col) pixel coordinates, inside the image.
    known : (M, N) ndarray of int, optional
        Pixels already decided (class id) and undecided ones (-1). Only undecided pixels are
        segmented (maskSLIC) and filled; decided ones keep their class and act as seeds.
    options : ExpandOptions, optional
    progress : callable, optional
        Called with :class:`Progress` events.

    Returns
    -------
    Expansion

    Raises
    ------
    ValueError
        If there are no points (and nothing known), points lie outside the image or ``known``
        has another shape.
    """
    return run_generator(iter_expand(image, points, known=known, options=options), progress)


def iter_expand(
    image: np.ndarray,
    points: PointSet,
    *,
    known: np.ndarray | None = None,
    options: ExpandOptions | None = None,
) -> Generator[Progress, None, Expansion]:
    """Generator version of :func:`expand`: yields :class:`Progress`, returns :class:`Expansion`."""
    opts = options or ExpandOptions()
    total = 4
    img = normalized_float(image)
    m, n = img.shape[:2]
    points.check_bounds((m, n))
    if known is not None:
        known = np.asarray(known)
        if known.shape != (m, n):
            raise ValueError(f"known labels of shape {known.shape} do not match image {(m, n)}")
        if not np.issubdtype(known.dtype, np.integer):
            raise ValueError("known labels must be an integer image with -1 for undecided pixels")
    known_classes = np.unique(known[known >= 0]) if known is not None else np.zeros(0, np.int64)
    classes = np.union1d(points.classes, known_classes).astype(np.int64)
    if classes.size == 0:
        raise ValueError("no labelled points: at least one point is needed to expand")
    yield Progress(0, total, "preparing features")

    factor = max(1, int(np.ceil(np.sqrt(m * n / opts.max_work_pixels))))
    small = block_mean(img, factor)
    feats = colour_features(small)
    h, w = feats.shape[:2]
    if known is not None:
        known_small = known[::factor, ::factor][:h, :w]
        undecided = known_small < 0
    else:
        known_small = None
        undecided = np.ones((h, w), dtype=bool)
    yield Progress(1, total, "superpixels")

    n_segments = max(1, int(round(h * w / opts.superpixel_size)))
    seg = slic_superpixels(
        feats, n_segments=n_segments, compactness=opts.compactness,
        mask=None if undecided.all() else undecided,
    )
    regions, n_sp = relabel_sequential(seg)
    node_seed = np.full(n_sp, -1, dtype=np.int64)  # class index of seeded nodes
    if known_small is not None and (~undecided).any():
        # every connected piece of each decided class becomes one seeded node
        from scipy import ndimage as ndi

        nxt = n_sp
        for ci, c in enumerate(classes):
            comp, k = ndi.label(known_small == c)
            if k:
                sel = comp > 0
                regions[sel] = comp[sel] - 1 + nxt
                node_seed = np.concatenate([node_seed, np.full(k, ci)])
                nxt += k
        n_nodes = nxt
    else:
        n_nodes = n_sp
    yield Progress(2, total, "propagating labels")

    class_index = np.searchsorted(classes, points.labels)
    rows, cols = points.pixel_indices()
    pr = np.minimum(rows // factor, h - 1)
    pc = np.minimum(cols // factor, w - 1)
    pnode = regions[pr, pc]
    votes = np.zeros((n_nodes, classes.size))
    ok = pnode >= 0
    np.add.at(votes, (pnode[ok], class_index[ok]), 1.0)
    seeded_by_points = votes.sum(axis=1) > 0
    node_seed[seeded_by_points] = votes[seeded_by_points].argmax(axis=1)

    means = region_means(regions, feats, n_nodes)
    probs = _propagate(regions, n_nodes, means, node_seed, classes.size, opts)
    yield Progress(3, total, "assembling labels")

    labels, confidence = _assemble(probs, regions, classes, factor, (m, n))
    if known is not None:
        dec = known >= 0
        labels[dec] = known[dec]
        confidence[dec] = np.maximum(confidence[dec], 1.0)
    labels[rows, cols] = points.labels  # every labelled point keeps its class
    yield Progress(4, total, "done")
    return Expansion(
        labels=labels,
        confidence=confidence,
        info={"method": "superpixel-graph", "work_factor": factor, "superpixels": n_sp,
              "classes": classes.tolist()},
    )


def _propagate(
    regions: np.ndarray,
    n_nodes: int,
    means: np.ndarray,
    node_seed: np.ndarray,
    n_classes: int,
    opts: ExpandOptions,
) -> np.ndarray:
    """Random walk with a colour prior over the region graph; returns (n_nodes, K) probabilities."""
    seeded = node_seed >= 0
    probs = np.zeros((n_nodes, n_classes))
    probs[seeded, node_seed[seeded]] = 1.0
    free = np.flatnonzero(~seeded)
    if free.size == 0:
        return probs
    if n_classes == 1:
        probs[:, 0] = 1.0
        return probs

    a, b, length = region_adjacency(regions, n_nodes)
    d2 = ((means[a] - means[b]) ** 2).sum(axis=1)
    scale = np.mean(d2) if d2.size and np.mean(d2) > 0 else 1.0
    wgt = np.exp(-opts.edge_beta * d2 / scale) * np.sqrt(length)
    W = sparse.coo_matrix((np.r_[wgt, wgt], (np.r_[a, b], np.r_[b, a])), shape=(n_nodes, n_nodes)).tocsr()
    deg = np.asarray(W.sum(axis=1)).ravel()

    # colour-space prior: soft nearest seeds in feature space
    seed_idx = np.flatnonzero(seeded)
    fd2 = ((means[free, None, :] - means[None, seed_idx, :]) ** 2).sum(axis=2)
    fd2 -= fd2.min(axis=1, keepdims=True)
    fscale = np.median(fd2[fd2 > 0]) if np.any(fd2 > 0) else 1.0
    kern = np.exp(-fd2 / fscale)
    prior = np.zeros((free.size, n_classes))
    for k in range(n_classes):
        cols = node_seed[seed_idx] == k
        if cols.any():
            prior[:, k] = kern[:, cols].max(axis=1)
    prior /= prior.sum(axis=1, keepdims=True)

    gamma = opts.prior_weight * (np.median(deg[deg > 0]) if np.any(deg > 0) else 1.0)
    L = sparse.diags(deg) - W
    Luu = L[free][:, free] + sparse.identity(free.size) * gamma
    rhs = -(L[free][:, seed_idx] @ probs[seed_idx]) + gamma * prior
    sol = spsolve(Luu.tocsc(), rhs)
    sol = np.asarray(sol).reshape(free.size, n_classes)
    sol = np.clip(sol, 0, None)
    sol /= np.maximum(sol.sum(axis=1, keepdims=True), 1e-12)
    probs[free] = sol
    return probs


def _assemble(
    probs: np.ndarray,
    regions: np.ndarray,
    classes: np.ndarray,
    factor: int,
    shape: tuple[int, int],
    *,
    strip_rows: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution labels and confidence from per-region probabilities (tiled in row strips)."""
    m, n = shape
    h, w = regions.shape
    dtype = label_dtype(int(classes.max()))
    labels = np.empty((m, n), dtype=dtype)
    confidence = np.empty((m, n), dtype=np.float32)
    probs32 = probs.astype(np.float32)
    if factor == 1:
        idx = np.argmax(probs32, axis=1)
        labels[:] = classes[idx][regions]
        confidence[:] = probs32.max(axis=1)[regions]
        return labels, confidence
    # bilinear interpolation of the class probability maps, one strip of output rows at a time
    pmap = probs32[regions]  # (h, w, K)
    cc = (np.arange(n) + 0.5) / factor - 0.5
    c0 = np.clip(np.floor(cc).astype(np.int64), 0, w - 1)
    c1 = np.clip(c0 + 1, 0, w - 1)
    fc = np.clip(cc - c0, 0, 1).astype(np.float32)[None, :, None]
    for start in range(0, m, strip_rows):
        stop = min(m, start + strip_rows)
        rr = (np.arange(start, stop) + 0.5) / factor - 0.5
        r0 = np.clip(np.floor(rr).astype(np.int64), 0, h - 1)
        r1 = np.clip(r0 + 1, 0, h - 1)
        fr = np.clip(rr - r0, 0, 1).astype(np.float32)[:, None, None]
        top = pmap[r0][:, c0] * (1 - fc) + pmap[r0][:, c1] * fc
        bot = pmap[r1][:, c0] * (1 - fc) + pmap[r1][:, c1] * fc
        p = top * (1 - fr) + bot * fr
        idx = np.argmax(p, axis=2)
        labels[start:stop] = classes[idx]
        confidence[start:stop] = np.take_along_axis(p, idx[:, :, None], axis=2)[:, :, 0]
    return labels, confidence
