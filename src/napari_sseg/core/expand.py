"""Weight-free expansion: class points (and optionally already-decided pixels) to dense labels.

The image is block-averaged to a working resolution and segmented into superpixels (maskSLIC
inside the region still to be labelled). Two experts then score every class:

* **spatial**: superpixels holding points, and connected regions already decided (for example by
  SAM2 masks), seed a graph of touching superpixels whose edge cost adds the centroid step and
  the colour difference. The geodesic distance to the nearest seed of each class gives a softmin
  class distribution, so a region takes the class of the seeds it reaches along similar-looking
  paths.
* **appearance**: a shrunk linear discriminant (LDA) on pixel colour and texture features,
  fitted to the pixels at the points (and alternatively to the whole superpixels they seed).

The experts are combined as a weighted product. The weights (and which appearance model) are
chosen per image by cross-validation over the labelled points themselves: each fold of points is
predicted from the others, and the combination with the best held-out mIoU (over the points'
classes) wins. Thin structures (membranes in EM) thus rely on appearance, large textured objects
(coral) on the graph. Probabilities are brought back to full resolution in strips; the winning
class and its probability (the confidence) are returned. Only the points (and ``known`` pixels)
are used.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from .appearance import fit_lda, pixel_features
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
        SLIC compactness (on scikit-image's rescaled [0, 1] feature scale, see
        :func:`~napari_sseg.core.superpixels.slic_superpixels`).
    colour_weight : float
        Weight of colour difference against spatial step in the region graph's edge cost.
    context_scales : tuple of float
        Wider Gaussian scales (working pixels) of the appearance features' colour context.
    cv_folds : int
        Folds of the cross-validation that picks the expert weights.
    spatial_weights, appearance_weights : tuple of float
        Candidate weights of the two experts (the spatial one acts as an inverse temperature).
    default_weights : (float, float, int)
        Spatial weight, appearance weight and appearance model used with fewer than 6 points.
    """

    max_work_pixels: int = 400_000
    superpixel_size: float = 150.0
    compactness: float = 10.0
    colour_weight: float = 3.0
    cv_folds: int = 5
    context_scales: tuple[float, ...] = (8.0,)
    spatial_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    appearance_weights: tuple[float, ...] = (0.0, 0.5, 1.0)
    default_weights: tuple[float, float, int] = (1.0, 0.5, 0)


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
    means = region_means(regions, feats, n_nodes)
    graph = _region_graph(regions, n_nodes, means, opts)
    pixfeat = pixel_features(feats, context=opts.context_scales)
    # context features (local contrast + every channel, per scale) come after the base ones
    n_base = pixfeat.shape[2] - len(opts.context_scales) * (feats.shape[2] + 1)
    known_node_seed = node_seed.copy()
    known_index = None
    if known_small is not None:
        known_index = np.full(known_small.shape, -1, dtype=np.int64)
        dec = known_small >= 0
        known_index[dec] = np.searchsorted(classes, known_small[dec])

    def experts(keep: np.ndarray):
        """Spatial log-probabilities per node and appearance models, from the kept points.

        Two appearance models are fitted: one on the pixels right at the points, one on all
        pixels of the regions the points seed (robust class statistics where classes are
        textured, wrong where a superpixel straddles thin structures); cross-validation picks.
        """
        seeds = known_node_seed.copy()
        votes = np.zeros((n_nodes, classes.size))
        np.add.at(votes, (pnode[keep], class_index[keep]), 1.0)
        has = votes.sum(axis=1) > 0
        seeds[has] = votes[has].argmax(axis=1)
        spatial = _geodesic_logp(graph, seeds, classes.size)
        models = []
        # (training pixels, features): the points' pixels with the base features; the seeded
        # regions' pixels, plentiful enough for the wider context features too
        for decided, n_feat in ((known_index, n_base), (np.where(seeds >= 0, seeds, -1)[regions], None)):
            xs, ys = _training_pixels(pixfeat, pr[keep], pc[keep], class_index[keep], decided)
            fitted = len(np.unique(ys)) > 1
            models.append(fit_lda(xs[:, :n_feat], ys, classes.size) if fitted else None)
        return spatial, models

    weights = _choose_weights(experts, pixfeat, regions, pr, pc, class_index, classes.size, opts)
    spatial, models = experts(np.ones(len(points), dtype=bool))
    logp = weights[0] * spatial[regions]
    model = models[weights[2]]
    if model is not None and weights[1] > 0:
        logp += weights[1] * model.log_proba(pixfeat)
    logp -= logp.max(axis=2, keepdims=True)
    pmap = np.exp(logp, out=logp)
    pmap /= pmap.sum(axis=2, keepdims=True)
    yield Progress(3, total, "assembling labels")

    labels, confidence = _assemble(pmap, classes, factor, (m, n))
    if known is not None:
        dec = known >= 0
        labels[dec] = known[dec]
        confidence[dec] = 1.0
    labels[rows, cols] = points.labels  # every labelled point keeps its class
    yield Progress(4, total, "done")
    return Expansion(
        labels=labels,
        confidence=confidence,
        info={"method": "superpixel-graph", "work_factor": factor, "superpixels": n_sp,
              "classes": classes.tolist(), "weights": list(weights)},
    )


def _region_graph(regions, n_nodes, means, opts):
    """Sparse graph of touching regions; edge cost = centroid step + colour difference."""
    a, b, _ = region_adjacency(regions, n_nodes)
    h, w = regions.shape
    rr, cc = np.mgrid[0:h, 0:w]
    cen = region_means(regions, np.stack([rr, cc], axis=-1).astype(np.float32), n_nodes)
    dsp = np.sqrt(((cen[a] - cen[b]) ** 2).sum(axis=1))
    dsp /= max(float(np.median(dsp)), 1e-6) if dsp.size else 1.0
    dcol = np.sqrt(((means[a] - means[b]) ** 2).sum(axis=1))
    dcol /= max(float(np.median(dcol)), 1e-6) if dcol.size else 1.0
    cost = dsp + opts.colour_weight * dcol + 1e-6
    return sparse.coo_matrix((cost, (a, b)), shape=(n_nodes, n_nodes)).tocsr()


def _geodesic_logp(graph, node_seed, n_classes):
    """Log-probabilities from geodesic distances to the nearest seed of each class."""
    from scipy.sparse.csgraph import dijkstra

    n_nodes = graph.shape[0]
    dist = np.full((n_nodes, n_classes), np.inf)
    for k in range(n_classes):
        src = np.flatnonzero(node_seed == k)
        if src.size:
            dist[:, k] = dijkstra(graph, directed=False, indices=src, min_only=True)
    finite = np.isfinite(dist)
    big = (dist[finite].max() if finite.any() else 0.0) + 50.0
    dist[~finite] = big
    logits = -(dist - dist.min(axis=1, keepdims=True))
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def _training_pixels(pixfeat, pr, pc, ci, decided, *, per_class=2000):
    """Feature rows under each point and its 8 neighbours, plus a sample of decided pixels.

    ``decided`` is a class-index image (-1 undecided) or None.
    """
    h, w = pixfeat.shape[:2]
    offs = np.array([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
    rr = np.clip(pr[:, None] + offs[None, :, 0], 0, h - 1).ravel()
    cc = np.clip(pc[:, None] + offs[None, :, 1], 0, w - 1).ravel()
    xs = [pixfeat[rr, cc]]
    ys = [np.repeat(ci, len(offs))]
    if decided is not None:
        flat = decided.ravel()
        sel = np.flatnonzero(flat >= 0)
        if sel.size:
            rng = np.random.default_rng(0)
            n_classes = int(flat.max()) + 1
            counts = np.bincount(flat[sel], minlength=n_classes)
            # equal-sized random sample per class, at most ``per_class`` each
            keep_prob = np.minimum(1.0, per_class / np.maximum(counts, 1))[flat[sel]]
            sel = sel[rng.random(sel.size) < keep_prob]
            xs.append(pixfeat.reshape(-1, pixfeat.shape[2])[sel])
            ys.append(flat[sel])
    return np.concatenate(xs), np.concatenate(ys)


def _choose_weights(experts, pixfeat, regions, pr, pc, ci, n_classes, opts):
    """Pick the mixing weights of the spatial and appearance experts by cross-validation.

    The labelled points are split into folds; each fold is predicted from the others. The
    combination (spatial weight, appearance weight, appearance model) with the best held-out
    mIoU over the points' classes wins (class-balanced accuracy, used before, rewarded
    appearance-only fits that spread rare classes over the image); ties go to the higher
    held-out likelihood.
    """
    n = len(ci)
    if n < 6 or n_classes < 2:
        return opts.default_weights
    rng = np.random.default_rng(12345)
    folds = rng.permutation(n) % min(opts.cv_folds, n)
    held_sp = np.zeros((n, n_classes))
    held_app = np.zeros((2, n, n_classes))
    for f in np.unique(folds):
        test = folds == f
        spatial, models = experts(~test)
        held_sp[test] = spatial[regions[pr[test], pc[test]]]
        for j, model in enumerate(models):
            if model is not None:
                held_app[j, test] = model.log_proba(pixfeat[pr[test], pc[test]])
    best, best_key = opts.default_weights, None
    present = np.bincount(ci, minlength=n_classes) > 0
    for wsp in opts.spatial_weights:
        for wap in opts.appearance_weights:
            for j in range(2 if wap > 0 else 1):
                if wsp == 0 and wap == 0:
                    continue
                z = wsp * held_sp + wap * held_app[j]
                z -= z.max(axis=1, keepdims=True)
                logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
                # held-out mIoU over the classes of the points (their confusion matrix)
                conf = np.zeros((n_classes, n_classes))
                np.add.at(conf, (ci, z.argmax(axis=1)), 1.0)
                tp = np.diag(conf)
                union = conf.sum(axis=0) + conf.sum(axis=1) - tp
                miou = np.mean(tp[present] / union[present])
                ll = np.mean(np.maximum(logp[np.arange(n), ci], -10))
                key = (round(miou, 6), ll)
                if best_key is None or key > best_key:
                    best, best_key = (wsp, wap, j), key
    return best


def _assemble(
    pmap: np.ndarray,
    classes: np.ndarray,
    factor: int,
    shape: tuple[int, int],
    *,
    strip_rows: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution labels and confidence from working-resolution class probabilities.

    Probabilities are bilinearly interpolated one strip of output rows at a time, so memory
    stays bounded for very large images.
    """
    m, n = shape
    h, w = pmap.shape[:2]
    dtype = label_dtype(int(classes.max()))
    labels = np.empty((m, n), dtype=dtype)
    confidence = np.empty((m, n), dtype=np.float32)
    pmap = pmap.astype(np.float32, copy=False)
    if factor == 1:
        idx = np.argmax(pmap, axis=2)
        labels[:] = classes[idx]
        confidence[:] = np.take_along_axis(pmap, idx[:, :, None], axis=2)[:, :, 0]
        return labels, confidence
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
