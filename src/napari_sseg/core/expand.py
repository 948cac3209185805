"""Weight-free expansion: class points (and optionally already-decided pixels) to dense labels.

The image is block-averaged to a working resolution and segmented into superpixels (maskSLIC
inside the region still to be labelled), at the main size and at a finer and a coarser one
(the extra layers are segmented at half resolution, which is cheap). Two experts then score
every class:

* **spatial**: superpixels holding points, and connected regions already decided (for example by
  SAM2 masks), seed a graph of touching superpixels whose edge cost adds the centroid step and
  the colour difference. The geodesic distance to the nearest seed of each class gives a softmin
  class distribution, so a region takes the class of the seeds it reaches along similar-looking
  paths. It is computed on every layer and either the main layer's or the mean over all layers
  is used (the mean softens the blocky edges of any one segmentation).
* **appearance**: a shrunk linear discriminant (LDA) on pixel colour and texture features,
  fitted to the pixels at the points (and alternatively to the whole superpixels they seed);
  extremely randomised trees on a multi-scale filter bank at the points; and the product of
  the points' LDA and the trees.

The experts are combined as a weighted product. The combinations (weights, appearance model,
spatial layers) are ranked per image by cross-validation over the labelled points themselves:
each fold of points is predicted from the others, and the combinations are ordered by held-out
mIoU (over the points' classes). Thin structures (membranes in EM) thus rely on appearance,
large textured objects (coral) on the graph; on single-channel images the product of the
appearance models is used alone unless another combination predicts the held-out points
clearly better (see ``ExpandOptions.single_channel_margin``). From 30 points on, the
posteriors of the best combinations (at most five, within a tolerance of the best held-out
mIoU) are averaged, which steadies a choice that a few points make noisily. The same folds
decide whether the average is smoothed with a Gaussian at a fraction of the point spacing
(blob-scale label smoothing: it helps where classes form large blobs and would erase thin
structures). Probabilities are brought back to full resolution in strips; the winning class and
its probability (the confidence) are returned. Only the points (and ``known`` pixels) are used.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import sparse

from .appearance import ProductModel, fit_forest, fit_lda, pixel_features
from .classaxis import class_argmax, log_softmax_inplace, softmax_inplace
from .corrections import merge_known
from .features import FEATURE_KINDS, filter_bank
from .image import normalized_float
from .metrics import segmentation_scores
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
from .survey import check_prior

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
    extra_superpixel_sizes : tuple of float
        Sizes of further superpixel layers; the spatial expert may average its geodesic
        probabilities over all layers (cross-validation decides per weight combination), which
        softens the blocky edges of any one segmentation. Empty: the main layer only.
    compactness : float
        SLIC compactness (on scikit-image's rescaled [0, 1] feature scale, see
        :func:`~napari_sseg.core.superpixels.slic_superpixels`).
    slic_iterations : int
        Most SLIC k-means iterations of every layer.
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
    ensemble_size : int
        Most best cross-validated weight combinations whose posteriors are averaged.
    ensemble_tolerance : float
        Only combinations whose held-out mIoU is within this of the best one's are averaged
        (without it, averaging with clearly worse combinations made 50 suggested points on EM
        worse than random ones: 56.3 against 60.8 mIoU; with it 60.1 against 59.4).
    averaging_min_points : int
        With fewer points, the single best combination is used and never smoothed. Averaging
        hurt where the points are not random: on EM, the expansion from 25 suggested points
        fell from 60.3 to 55.1 mIoU with averaging from 25 points on (random points: 56.8),
        and on aerial tiles suggestions lost their lead at 15 points with averaging from 0.
    smoothing : float
        Standard deviation of the Gaussian that may smooth the posterior, as a fraction of the
        mean spacing of the seeds (``sqrt(area / number of seeds)``); cross-validation decides
        whether it is applied. 0 disables smoothing.
    pixel_smoothing : float
        Standard deviation (working pixels) of a Gaussian that smooths a posterior the
        seed-spacing ``smoothing`` left alone (a single combination, or smoothing rejected)
        where the folds show it predicts the held-out points strictly better: the appearance
        models classify each pixel on its own, and their speckle goes. 0 disables it.
        Development halves of ``benchmarks/bench_peers.py``, random points, 25 / 100 points,
        3 seeds, none / always / decided by the folds: EM slices 63.0 / 67.5, 64.2 / 69.1,
        63.4 / 68.8 mIoU; aerial tiles 41.3 / 56.1, 41.8 / 56.3, 41.4 / 56.1; reef photos
        36.1 / 56.3, -, 36.2 / 56.4. The folds keep it off where it would blur structures
        of a few pixels (4-pixel blocks: always 0.78 mIoU, decided 0.95, as without it).
        Volumes do not use it.
    forest_scales : tuple of float
        Scales (working pixels) of the texture filters of
        :func:`~napari_sseg.core.features.filter_bank` that the forest expert adds to the
        appearance features. Empty (or ``forest_trees=0``) disables the forest expert.
    forest_trees, forest_cv_trees : int
        Trees of the forest expert (extremely randomised trees, trained on the points' own
        pixels) in the final fit and in each cross-validation fold.
    forest_depth : int or None
        Most depth of its trees.
    forest_max_features : float or str
        Features drawn at each split of its trees (a fraction, or ``"sqrt"``). Half of them
        (rather than the square root, about a seventh) makes each tree pick among the
        texture filters that separate thin structures: development EM slices, product model
        alone, 25 / 100 points: 63.3 / 67.0 (sqrt), 63.7 / 67.5 (0.5), 64.0 / 67.6 (1.0);
        reef photos (cross-validated choice) 35.8 / 56.3, 36.1 / 56.3, 33.9 / 56.3.
    preferred_margin : float
        If >= 0, the appearance-only combination of the product model (points' LDA times the
        forest) is used alone unless another combination predicts the held-out points better
        by more than this held-out mIoU (0 to 1). Off (negative) for colour images: with
        suggested points, which spread over the image so that the graph looks worse on
        held-out points than it is, a margin of 0.1 made reef photos lose 12 mIoU at 25
        points (46.2 to 34.5). Volumes use 0.1 (points on a few planes; see
        :class:`~napari_sseg.core.volume.VolumeOptions`).
    single_channel_margin : float or None
        ``preferred_margin`` of single-channel (grey) images; None: the same as colour ones.
        On one channel the superpixels and the graph's colour cost see intensity alone, so
        thin or texture-defined structures (EM membranes, fibres) are drawn by the filter bank
        of the appearance models and the graph only blurs them, while 25 held-out points are
        too few to show it. Development EM slices, random points, 25 / 100 points, 3 seeds:
        cross-validation alone 60.8 / 65.2 mIoU; margin 0.1 with the product averaged with
        the other combinations 61.9 / 65.5; margin 0.2, product alone 62.5 / 66.8 (with
        ``forest_max_features`` 0.5: 63.0 / 67.5). Colour images keep ``preferred_margin``.
    """

    max_work_pixels: int = 400_000
    superpixel_size: float = 150.0
    extra_superpixel_sizes: tuple[float, ...] = (100.0, 250.0)
    compactness: float = 10.0
    slic_iterations: int = 5
    colour_weight: float = 3.0
    cv_folds: int = 5
    context_scales: tuple[float, ...] = (8.0,)
    spatial_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    appearance_weights: tuple[float, ...] = (0.0, 0.5, 1.0)
    default_weights: tuple[float, float, int] = (1.0, 0.5, 0)
    ensemble_size: int = 5
    ensemble_tolerance: float = 0.05
    averaging_min_points: int = 30
    smoothing: float = 0.15
    pixel_smoothing: float = 1.5
    forest_scales: tuple[float, ...] = (0.7, 1.6, 3.5, 5.0)
    forest_trees: int = 16
    forest_cv_trees: int = 8
    forest_depth: int | None = 12
    forest_max_features: float | str = 0.5
    preferred_margin: float = -1.0
    single_channel_margin: float | None = 0.2


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
    corrections: np.ndarray | None = None,
    options: ExpandOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    prior_proba: np.ndarray | None = None,
    prior_classes: np.ndarray | None = None,
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
    corrections : (M, N) ndarray of int, optional
        Pixels the user painted: class id where painted, the ignore value elsewhere (255 for
        uint8, 65535 for uint16, -1 for signed; see :mod:`napari_sseg.core.corrections`).
        They are decided pixels that win over ``known`` and over the points: they keep their
        class exactly, seed the region graph and (a class-balanced sample of them) train the
        appearance model of the seeded regions (and that of the points' pixels for classes
        without points). The experts' weights are still chosen by cross-validation over the
        points alone. Corrections without points are enough to expand.
    options : ExpandOptions, optional
    progress : callable, optional
        Called with :class:`Progress` events.
    prior_proba : (P, Q, K) ndarray of float, optional
        Class probabilities of a survey model for this image, on any grid covering it (see
        :mod:`napari_sseg.core.survey`): a third expert, joined as a weighted product whose
        prior weight and per-class biases are fitted to the points' held-out predictions (a
        model that over-predicts a class on this image is corrected by the points, one that
        does not transfer loses its weight).
    prior_classes : (K,) array_like of int, optional
        Class ids of the last axis of ``prior_proba``; every class of the points must be one.

    Returns
    -------
    Expansion

    Raises
    ------
    ValueError
        If there are no points (and nothing known or painted), points lie outside the image
        or ``known`` / ``corrections`` have another shape.
    """
    return run_generator(iter_expand(image, points, known=known, corrections=corrections,
                                     options=options, prior_proba=prior_proba,
                                     prior_classes=prior_classes), progress)


def iter_expand(
    image: np.ndarray,
    points: PointSet,
    *,
    known: np.ndarray | None = None,
    corrections: np.ndarray | None = None,
    options: ExpandOptions | None = None,
    prior_proba: np.ndarray | None = None,
    prior_classes: np.ndarray | None = None,
) -> Generator[Progress, None, Expansion]:
    """Generator version of :func:`expand`: yields :class:`Progress`, returns :class:`Expansion`."""
    opts = options or ExpandOptions()
    total = 4
    img = normalized_float(image)
    m, n = img.shape[:2]
    points.check_bounds((m, n))
    known, painted = merge_known(known, corrections, (m, n))
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
    prior_cols = None if prior_proba is None else check_prior(prior_proba, prior_classes, classes)
    yield Progress(0, total, "preparing features")

    factor = max(1, int(np.ceil(np.sqrt(m * n / opts.max_work_pixels))))
    small = block_mean(img, factor)
    feats = colour_features(small)
    if feats.shape[2] == 1 and opts.single_channel_margin is not None:
        opts = replace(opts, preferred_margin=opts.single_channel_margin)
    h, w = feats.shape[:2]
    if known is not None:
        known_small = known[::factor, ::factor][:h, :w]
        undecided = known_small < 0
    else:
        known_small = None
        undecided = np.ones((h, w), dtype=bool)
    yield Progress(1, total, "superpixels")

    # the main superpixels plus coarser and finer ones: the spatial expert may average them
    layers = [_seeded_layer(feats, size, opts, undecided, known_small, classes,
                            downsample=1 if i == 0 else 2)
              for i, size in enumerate((opts.superpixel_size, *opts.extra_superpixel_sizes))]
    regions, node_seed = layers[0].regions, layers[0].node_seed
    n_sp = int((node_seed < 0).sum())
    yield Progress(2, total, "propagating labels")

    class_index = np.searchsorted(classes, points.labels)
    rows, cols = points.pixel_indices()
    pr = np.minimum(rows // factor, h - 1)
    pc = np.minimum(cols // factor, w - 1)
    pnodes = [layer.regions[pr, pc] for layer in layers]
    pixfeat = pixel_features(feats, context=opts.context_scales)
    # context features (local contrast + every channel, per scale) come after the base ones
    n_base = pixfeat.shape[2] - len(opts.context_scales) * (feats.shape[2] + 1)
    n_pix = pixfeat.shape[2]
    if opts.forest_scales and opts.forest_trees > 0:
        # the forest expert's texture filters (the colour smoothing is in pixel_features) follow
        # the LDA's columns: on the lightness of CIELAB, else the first principal component
        bank = filter_bank(feats, scales=opts.forest_scales, normalize=False,
                           features=FEATURE_KINDS[1:],
                           texture="first" if feats.shape[2] == 3 else "auto")
        pixfeat = np.concatenate([pixfeat, bank], axis=2)
    known_index = None
    if known_small is not None:
        known_index = np.full(known_small.shape, -1, dtype=np.int64)
        dec = known_small >= 0
        known_index[dec] = np.searchsorted(classes, known_small[dec])
    # corrections act where they were painted: the weights are chosen as if nothing were
    # painted (cross-validation on the points); painted pieces seed the graph and train the
    # model of the seeded regions (a class-balanced sample of at most 2000 pixels per class).
    # The model of the pixels at the points sees painted pixels only of classes without
    # points: painted pixels lie where the expansion erred, and in that model they skewed the
    # classes (EM lost 9 to 45 mIoU after a few corrections)
    cv_seed = [layer.node_seed for layer in layers]
    if painted is not None:
        painted_small = painted[::factor, ::factor][:h, :w]
        cv_seed = [_unseed_painted(layer, painted_small) for layer in layers]
        known_index[painted_small & np.isin(known_small, points.labels)] = -1

    def experts(keep: np.ndarray, *, cv: bool = False, forest: bool = True):
        """Spatial expert and appearance models, from the kept points.

        Two linear appearance models are fitted: one on the pixels right at the points, one on
        all pixels of the main layer's regions the points seed (robust class statistics where
        classes are textured, wrong where a superpixel straddles thin structures); and a tree
        ensemble on the multi-scale filter bank at the points (thin or textured structures
        that no linear boundary separates), and the product of the first and the trees;
        cross-validation picks. With ``cv``, painted
        pixels are left out and the forest has ``forest_cv_trees`` trees; without ``forest``
        (the final fit, when no chosen combination weighs it) it is not fitted.
        """
        node_seeds = cv_seed if cv else [layer.node_seed for layer in layers]
        seeds = [_seed_nodes(ns, pnode[keep], class_index[keep], classes.size)
                 for ns, pnode in zip(node_seeds, pnodes)]
        spatial = _SpatialExpert([(layer.regions, _geodesic_logp(layer.graph, sd, classes.size))
                                  for layer, sd in zip(layers, seeds)])
        models = []
        # (training pixels, features): the points' pixels with the base features; the seeded
        # regions' pixels, plentiful enough for the wider context features too
        for decided, n_feat in ((known_index, n_base), (seeds[0][regions], n_pix)):
            xs, ys = _training_pixels(pixfeat, pr[keep], pc[keep], class_index[keep], decided)
            fitted = len(np.unique(ys)) > 1
            models.append(fit_lda(xs[:, :n_feat], ys, classes.size) if fitted else None)
            if n_feat == n_base:
                at_points = xs, ys
        if pixfeat.shape[2] > n_pix:
            # the forest expert: trees on all features (colour, texture, the filter bank) at
            # the points' own pixels (their 3 x 3 neighbours straddle thin structures and
            # mislabel them) and any decided pixels of the sample; fewer trees in the folds
            xs, ys = at_points
            nk = int(keep.sum())
            xs, ys = np.concatenate([xs[4:9 * nk:9], xs[9 * nk:]]), np.concatenate(
                [ys[4:9 * nk:9], ys[9 * nk:]])
            models += _forest_models(xs, ys, classes.size, opts, models[0], cv=cv, forest=forest)
        return spatial, models

    ranked, folds = _rank_weights(lambda keep: experts(keep, cv=True), pixfeat, pr, pc,
                                  class_index, classes.size, opts, multi=len(layers) > 1)
    n_seeds = max(1, len(points) + int((cv_seed[0] >= 0).sum()))
    averaging, ensemble = _choose_ensemble(ranked, folds, len(points), opts)
    sigma = opts.smoothing * np.sqrt(h * w / n_seeds)
    if not (averaging and _smoothing_helps(ensemble, folds, pixfeat, pr, pc, class_index,
                                           classes.size, sigma)):
        sigma = 0.0
    spatial, models = experts(np.ones(len(points), dtype=bool),
                              forest=any(wap > 0 and j >= 2 for _, wap, j, _ in ensemble))
    # a smoothed posterior varies slowly: average it on a grid coarser by about sigma / 2
    step = max(1, int(sigma // 2))
    everything = (slice(None), slice(None))
    spatial_maps = {k: block_mean(v.astype(np.float32), step)
                    for k, v in spatial.at(*everything, {e[3] for e in ensemble}).items()}
    app_maps = {j: block_mean(models[j].log_proba(pixfeat), step)
                for j in _used_models(ensemble, models)}
    pmap = _ensemble_proba(ensemble, spatial_maps, app_maps)
    fine = 0.0  # pixel-scale smoothing where the seed-spacing one is not applied
    if sigma == 0 and opts.pixel_smoothing > 0 and _smoothing_helps(
            ensemble, folds, pixfeat, pr, pc, class_index, classes.size, opts.pixel_smoothing):
        fine = opts.pixel_smoothing
    smooth = sigma or fine  # working pixels; the grid step is 1 unless sigma > 0
    if smooth > 0:
        from scipy import ndimage as ndi

        pmap = ndi.gaussian_filter(pmap, (smooth / step, smooth / step, 0), truncate=3.0)
    prior_weights = None
    if prior_cols is not None:  # the survey model, weighted by the same folds
        pixel_only = feats.shape[2] == 1 and all(e[0] == 0 for e in ensemble)
        pmap, prior_weights = _with_prior(pmap, prior_proba, prior_cols, ensemble, folds,
                                          pixfeat, pr, pc, class_index, sigma, factor, step,
                                          (m, n), pixel_only=pixel_only)
    yield Progress(3, total, "assembling labels")

    labels, confidence = _assemble(pmap, classes, factor * step, (m, n))
    if known is not None:
        dec = known >= 0
        labels[dec] = known[dec]
        confidence[dec] = 1.0
    labels[rows, cols] = points.labels  # every labelled point keeps its class
    if painted is not None:  # and every painted pixel, even over a point
        labels[painted] = known[painted]
    yield Progress(4, total, "done")
    return Expansion(
        labels=labels,
        confidence=confidence,
        info={"method": "superpixel-graph", "work_factor": factor, "superpixels": n_sp,
              "classes": classes.tolist(), "weights": [list(e) for e in ensemble],
              "smoothing_px": float(smooth * factor), "prior_weights": prior_weights},
    )


def _choose_ensemble(ranked, folds, n_points, opts):
    """Whether posteriors are averaged, and the weight combinations that are: the best ranked
    one, plus (with at least ``opts.averaging_min_points`` points and folds) up to
    ``opts.ensemble_size - 1`` more within ``opts.ensemble_tolerance`` of its held-out mIoU.
    Shared by the 2D and the volume expansion."""
    averaging = n_points >= opts.averaging_min_points and bool(folds)
    best_score, best = ranked[0]
    size = max(1, opts.ensemble_size) if averaging else 1
    return averaging, [best] + [w for score, w in ranked[1:size]
                                if score >= best_score - opts.ensemble_tolerance]


def _forest_models(x, y, n_classes, opts, lda, *, cv, forest):
    """The forest expert fitted on ``(x, y)`` and its product with the points' ``lda`` (each
    None where it cannot be fitted): ``forest_cv_trees`` trees with ``cv``, none without
    ``forest``. Shared by the 2D and the volume expansion."""
    n_trees = opts.forest_cv_trees if cv else opts.forest_trees if forest else 0
    trees = (fit_forest(x, y, n_classes, n_trees=n_trees, max_depth=opts.forest_depth,
                        max_features=opts.forest_max_features)
             if n_trees > 0 and len(np.unique(y)) > 1 else None)
    # their product: the LDA's smooth boundary tempers the trees' jumps
    product = ProductModel([lda, trees]) if lda is not None and trees is not None else None
    return [trees, product]


@dataclass
class _Layer:
    """One superpixel segmentation as a graph: region ids, region graph, seeded node classes."""

    regions: np.ndarray
    graph: sparse.csr_matrix
    node_seed: np.ndarray


def _seeded_layer(feats, size, opts, undecided, known_small, classes, *, downsample=1):
    """Superpixels of about ``size`` pixels in the undecided area, plus decided-region nodes.

    Every connected piece of each decided class (``known_small``) becomes one node seeded with
    that class (``node_seed`` holds its class index; -1 for superpixels). ``downsample`` is
    passed to :func:`slic_superpixels`; SLIC and graph settings come from ``opts``.
    """
    h, w = feats.shape[:2]
    seg = slic_superpixels(
        feats, n_segments=max(1, round(h * w / size)), compactness=opts.compactness,
        mask=None if undecided.all() else undecided, downsample=downsample,
        iterations=opts.slic_iterations,
    )
    regions, n_nodes = relabel_sequential(seg)
    node_seed = np.full(n_nodes, -1, dtype=np.int64)
    if known_small is not None and (~undecided).any():
        from scipy import ndimage as ndi

        pieces = [node_seed]
        for ci, c in enumerate(classes):
            comp, k = ndi.label(known_small == c)
            if k:
                sel = comp > 0
                regions[sel] = comp[sel] - 1 + n_nodes
                pieces.append(np.full(k, ci))
                n_nodes += k
        node_seed = np.concatenate(pieces)
    graph = _region_graph(regions, n_nodes, region_means(regions, feats, n_nodes),
                          opts.colour_weight)
    return _Layer(regions, graph, node_seed)


def _unseed_painted(layer, painted):
    """``layer.node_seed`` with the nodes made only of painted pixels unseeded."""
    valid = layer.regions >= 0
    n = layer.node_seed.size
    total = np.bincount(layer.regions[valid], minlength=n)
    hit = np.bincount(layer.regions[valid], weights=painted[valid], minlength=n)
    seeds = layer.node_seed.copy()
    seeds[(total > 0) & (hit >= total)] = -1
    return seeds


def _seed_nodes(node_seed, nodes, ci, n_classes):
    """Class index of every node: ``node_seed`` (-1: none) overridden by the majority class of
    the points in it (``nodes``: each point's node, ``ci``: its class index)."""
    seeds = node_seed.copy()
    votes = np.zeros((seeds.size, n_classes))
    np.add.at(votes, (nodes, ci), 1.0)
    has = votes.sum(axis=1) > 0
    seeds[has] = votes[has].argmax(axis=1)
    return seeds


def _region_graph(regions, n_nodes, means, colour_weight):
    """Sparse graph of touching regions; edge cost = centroid step + colour difference."""
    a, b, _ = region_adjacency(regions, n_nodes)
    h, w = regions.shape
    rr, cc = np.mgrid[0:h, 0:w]
    cen = region_means(regions, np.stack([rr, cc], axis=-1).astype(np.float32), n_nodes)
    dsp = np.sqrt(((cen[a] - cen[b]) ** 2).sum(axis=1))
    dsp /= max(float(np.median(dsp)), 1e-6) if dsp.size else 1.0
    dcol = np.sqrt(((means[a] - means[b]) ** 2).sum(axis=1))
    dcol /= max(float(np.median(dcol)), 1e-6) if dcol.size else 1.0
    cost = dsp + colour_weight * dcol + 1e-6
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
    return log_softmax_inplace(-dist)


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


class _SpatialExpert:
    """Geodesic class log-probabilities on one or more superpixel layers.

    Parameters
    ----------
    layers : list of ((M, N) ndarray of int, (R, K) ndarray)
        Region ids of each layer and the log-probabilities of its regions; the first is the
        main layer.
    """

    def __init__(self, layers):
        self.layers = layers

    def at(self, rr, cc, choices) -> dict:
        """Log-probabilities at pixels ``(rr, cc)`` for each layer choice in ``choices``:
        0 the main layer's, 1 the mean over all layers (the main layer is gathered once)."""
        (regions, logp), rest = self.layers[0], self.layers[1:]
        main = logp[regions[rr, cc]]
        out = {}
        if 0 in choices:
            out[0] = main
        if 1 in choices:
            out[1] = sum((lp[reg[rr, cc]] for reg, lp in rest), main) / len(self.layers)
        return out


def _held_out_key(scores, ci):
    """(mIoU over the points' classes, mean log-likelihood) of held-out predictions.

    ``scores`` are (n, K) log-probabilities at the held-out points (clipped at -10 in the
    likelihood), ``ci`` their true class indices.
    """
    n, k = scores.shape
    conf = np.zeros((k, k))
    np.add.at(conf, (ci, scores.argmax(axis=1)), 1.0)
    return round(segmentation_scores(conf)["miou"], 6), float(
        np.mean(np.maximum(scores[np.arange(n), ci], -10)))


def _rank_weights(experts, pixfeat, pr, pc, ci, n_classes, opts, *, multi):
    """Rank the mixing weights of the spatial and appearance experts by cross-validation.

    The labelled points are split into folds; each fold is predicted from the others. The
    combinations (spatial weight, appearance weight, appearance model, spatial layers: main
    only or the mean of all) are ordered by held-out mIoU over the points' classes
    (class-balanced accuracy, used before, rewarded appearance-only fits that spread rare
    classes over the image), ties by held-out likelihood; with ``opts.preferred_margin`` >= 0
    the product model alone is returned unless beaten by more than that margin.

    Returns
    -------
    ranked : list of (float, (float, float, int, int))
        Held-out mIoU and weight combination, best first (only the default combination, with
        a NaN score, with fewer than 6 points).
    folds : list of (ndarray of bool, _SpatialExpert, list)
        Per fold: the held-out points and the experts fitted without them (empty with fewer
        than 6 points).
    """
    n = len(ci)
    if n < 6 or n_classes < 2:
        return [(float("nan"), (*opts.default_weights, 0))], []
    layer_choices = (0, 1) if multi else (0,)
    # folds are dealt in the points' (row, col, class) order, not the order they were given in,
    # so the same points in any order give the same mask
    folds = np.empty(n, dtype=np.int64)
    folds[np.lexsort((ci, pc, pr))] = (np.random.default_rng(12345).permutation(n)
                                        % min(opts.cv_folds, n))
    held_sp = np.zeros((2, n, n_classes))
    held_app = None
    fitted = []
    for f in np.unique(folds):
        test = folds == f
        spatial, models = experts(~test)
        fitted.append((test, spatial, models))
        if held_app is None:
            held_app = np.zeros((len(models), n, n_classes))
        for k, v in spatial.at(pr[test], pc[test], layer_choices).items():
            held_sp[k, test] = v
        for j, model in enumerate(models):
            if model is not None:
                held_app[j, test] = model.log_proba(pixfeat[pr[test], pc[test]])
    scored = []
    for wsp in opts.spatial_weights:
        for wap in opts.appearance_weights:
            for j in range(len(held_app) if wap > 0 else 1):
                for k in layer_choices if wsp > 0 else (0,):
                    if wsp == 0 and wap == 0:
                        continue
                    logp = log_softmax_inplace(wsp * held_sp[k] + wap * held_app[j])
                    scored.append((_held_out_key(logp, ci), (wsp, wap, j, k)))
    scored.sort(key=lambda t: t[0], reverse=True)  # stable: equal keys keep the grid order
    if len(held_app) > 3:
        _prefer(scored, (0.0, 1.0, 3, 0), opts.preferred_margin)
    return [(key[0], w) for key, w in scored], fitted


def _prefer(scored, weights, margin):
    """Keep only ``weights`` in ``scored`` (best first) if its held-out mIoU is within
    ``margin`` of the best one's: the combinations above it lead by less than the margin says
    to trust, and averaging it with the ones below it lost on EM (100 points on the
    development slices: 64.7 mIoU against 67.0 alone)."""
    hit = next((i for i, (_, w) in enumerate(scored) if w == weights), None)
    if hit is not None and margin >= 0 and scored[hit][0][0] >= scored[0][0][0] - margin:
        scored[:] = [scored[hit]]


def _used_models(ensemble, models):
    """Indices of the appearance models that some member of ``ensemble`` weighs."""
    return {j for _, wap, j, _ in ensemble if wap > 0 and models[j] is not None}


def _ensemble_proba(ensemble, spatial_logp, app_logp):
    """Mean class probabilities of several weighted products of the experts.

    Parameters
    ----------
    ensemble : list of (float, float, int, int)
        Spatial weight, appearance weight, appearance model and spatial layer choice of each
        combination.
    spatial_logp : dict of int to (..., K) ndarray
        Spatial expert's log-probabilities for each layer choice in use.
    app_logp : dict of int to (..., K) ndarray
        Each appearance model's log-probabilities (missing: no model, weight ignored).

    Returns
    -------
    (..., K) ndarray of float32
    """
    total = 0.0
    for wsp, wap, j, k in ensemble:
        z = np.float32(wsp) * spatial_logp[k]
        if wap > 0 and j in app_logp:
            z += np.float32(wap) * app_logp[j]
        total = total + softmax_inplace(z)
    return total / len(ensemble)


def _held_out_proba(ensemble, folds, pixfeat, pr, pc, n_classes, sigma=0.0):
    """Averaged posteriors of ``ensemble`` at every held-out point, from the folds' experts.

    With ``sigma`` >= 1 (working pixels) the posterior is the Gaussian-weighted mean over a
    strided window of radius ``2 sigma`` around the point, as the smoothing would make it.
    """
    h, w = pixfeat.shape[:2]
    if sigma >= 1.0:
        radius = int(np.ceil(2 * sigma))
        offs = np.arange(-radius, radius + 1, max(1, int(sigma // 4)))
    else:
        offs = np.zeros(1, dtype=np.int64)
    dr, dc = (a.ravel() for a in np.meshgrid(offs, offs, indexing="ij"))
    kernel = np.exp(-(dr**2 + dc**2) / (2 * max(sigma, 1.0) ** 2)).astype(np.float32)
    held = np.zeros((len(pr), n_classes))
    for test, spatial, models in folds:
        idx = np.flatnonzero(test)
        rr, cc = pr[idx, None] + dr[None], pc[idx, None] + dc[None]
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        rr, cc = np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)
        apps = {j: models[j].log_proba(pixfeat[rr, cc]) for j in _used_models(ensemble, models)}
        sps = {k: v.astype(np.float32)
               for k, v in spatial.at(rr, cc, {e[3] for e in ensemble}).items()}
        proba = _ensemble_proba(ensemble, sps, apps)
        wgt = kernel[None, :] * inside
        held[idx] = (proba * wgt[:, :, None]).sum(axis=1) / wgt.sum(axis=1)[:, None]
    return held


def _smoothing_helps(ensemble, folds, pixfeat, pr, pc, ci, n_classes, sigma):
    """Whether Gaussian smoothing at ``sigma`` predicts the held-out points strictly better.

    Held-out mIoU over the points' classes, ties by held-out likelihood.
    """
    if sigma < 1.0:
        return False
    plain, smoothed = (
        _held_out_key(np.log(np.maximum(p, 1e-10)), ci)
        for p in (_held_out_proba(ensemble, folds, pixfeat, pr, pc, n_classes, s)
                  for s in (0.0, sigma)))
    return smoothed > plain


def _with_prior(pmap, prior, cols, ensemble, folds, pixfeat, pr, pc, ci, sigma, factor, step,
                full_shape, *, pixel_only=False):
    """Join a survey model's probabilities to the posterior ``pmap`` (on a grid of
    ``factor * step`` pixels), the prior's weight and class biases fitted to the folds'
    held-out points (see :mod:`napari_sseg.core.survey`; 1 and 0 without folds). With
    ``pixel_only`` (a single-channel image whose expansion has no spatial expert) the
    expansion's term is left out and the points only recalibrate the prior. Returns the
    joined posterior and the weights: expansion, prior, per-class biases."""
    from .survey import (
        BIAS_PENALTY,
        EXPANSION_WEIGHT,
        PIXEL_ONLY_BIAS_PENALTY,
        combine_prior,
        expansion_logits,
        fit_calibration,
        prior_logits,
        prior_on_grid,
    )

    r = 0.0 if pixel_only else EXPANSION_WEIGHT
    weight, bias = 1.0, np.zeros(cols.size)
    if folds:
        held = _held_out_proba(ensemble, folds, pixfeat, pr, pc, cols.size, sigma)
        at_points = prior_on_grid(prior, cols, pixfeat.shape[:2], factor, full_shape)[pr, pc]
        weight, bias = fit_calibration(
            expansion_logits(held, r), prior_logits(at_points), ci,
            bias_penalty=PIXEL_ONLY_BIAS_PENALTY if pixel_only else BIAS_PENALTY)
    grid = prior_on_grid(prior, cols, pmap.shape[:2], factor * step, full_shape)
    weights = {"expansion": r, "prior": round(weight, 4), "bias": np.round(bias, 4).tolist()}
    return combine_prior(pmap, grid, weight, bias, expansion_weight=r), weights


def _assemble(
    pmap: np.ndarray,
    classes: np.ndarray,
    factor: int,
    shape: tuple[int, int],
    *,
    strip_rows: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution labels and confidence from working-resolution class probabilities.

    The labels are the argmax of the bilinearly interpolated probabilities and the confidence
    its value, computed one strip of output rows at a time so memory stays bounded. Where the
    four working pixels around an output pixel share their argmax class, every difference
    between that class and another is a convex combination of non-negative ones, so the class
    wins there too and its interpolated probability is the interpolated maximum: only pixels
    near a class boundary interpolate all classes.
    """
    m, n = shape
    h, w = pmap.shape[:2]
    dtype = label_dtype(int(classes.max()))
    labels = np.empty((m, n), dtype=dtype)
    confidence = np.empty((m, n), dtype=np.float32)
    pmap = pmap.astype(np.float32, copy=False)
    best, top_p = class_argmax(pmap)
    if factor == 1:
        labels[:] = classes[best]
        confidence[:] = top_p
        return labels, confidence
    # agree[r, c]: working pixels (r, c), (r, c+1), (r+1, c), (r+1, c+1) share a class
    # (edge-padded, matching the clipped neighbours below)
    bp = np.pad(best, ((0, 1), (0, 1)), mode="edge")
    corner = bp[:-1, :-1]
    agree = (corner == bp[:-1, 1:]) & (corner == bp[1:, :-1]) & (corner == bp[1:, 1:])
    cc = (np.arange(n) + 0.5) / factor - 0.5
    c0 = np.clip(np.floor(cc).astype(np.int64), 0, w - 1)
    c1 = np.clip(c0 + 1, 0, w - 1)
    fc = np.clip(cc - c0, 0, 1).astype(np.float32)

    def lerp(a, r0, r1, fr, c0, c1, fc):
        """Bilinear interpolation of ``a`` between rows r0/r1 and columns c0/c1 (broadcast)."""
        top = a[r0, c0] * (1 - fc) + a[r0, c1] * fc
        bot = a[r1, c0] * (1 - fc) + a[r1, c1] * fc
        return top * (1 - fr) + bot * fr

    for start in range(0, m, strip_rows):
        stop = min(m, start + strip_rows)
        rr = (np.arange(start, stop) + 0.5) / factor - 0.5
        r0 = np.clip(np.floor(rr).astype(np.int64), 0, h - 1)
        r1 = np.clip(r0 + 1, 0, h - 1)
        fr = np.clip(rr - r0, 0, 1).astype(np.float32)
        idx = best[r0[:, None], c0[None, :]]
        conf = lerp(top_p, r0[:, None], r1[:, None], fr[:, None], c0[None, :], c1[None, :],
                    fc[None, :])
        ir, ic = np.nonzero(~agree[r0[:, None], c0[None, :]])
        if ir.size:  # near class boundaries: interpolate every class
            p = lerp(pmap, r0[ir], r1[ir], fr[ir, None], c0[ic], c1[ic], fc[ic, None])
            idx[ir, ic], conf[ir, ic] = class_argmax(p)
        labels[start:stop] = classes[idx]
        confidence[start:stop] = conf
    return labels, confidence
