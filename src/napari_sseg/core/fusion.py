"""Hybrid expansion: promptable masks from the points, conflicts settled by votes, maskSLIC fill.

Steps (METHOD.md, section 2):

1. **Embedding.** The proposer embeds the image once.
2. **Candidates.** Every labelled point is a positive click; its nearest points of other classes
   are negative clicks. The proposer returns candidate masks as low-resolution logits and
   predicted IoUs.
3. **Choice.** A candidate is rejected when its predicted IoU is below ``min_iou``, when it does not
   contain its own point, or when points of other classes make up more than ``max_other_share`` of
   the points it contains. Among the rest the point keeps the candidate maximising
   ``iou + 0.8 * ln(1 + C) - 1.4 * a - other_penalty * s``, with ``a`` the mask's area fraction,
   ``C = min(1, 2 * sqrt(pi * area) / perimeter)`` its compactness (perimeter: length of the pixel
   edges between the mask and the rest) and ``s`` the share of other-class points among the
   points it contains. If the kept mask still contains points of other classes it is trimmed: its
   pixels nearer to one of those points than to every point of its own class inside it are
   removed, and only the piece holding the point is kept. All this is computed on the
   low-resolution grid; only the kept mask is brought to full resolution, as a bounding-box crop.
4. **Conflicts.** Pixels covered by masks of different classes are grouped by identical mask
   coverage; each group takes the class voted by the labelled points of the competing classes
   inside it, with weight ``1 / (1 + d)`` (``d``: distance to the group's centroid), or, if none
   lies inside, by the ``vote_neighbours`` nearest points of the competing classes.
5. **Fill.** The decided pixels become the ``known`` map of
   :func:`napari_sseg.core.expand.iter_expand`, which segments only the uncovered pixels with
   maskSLIC and labels them by propagation from the points and the decided regions.

The confidence of a SAM-decided pixel is the predicted IoU of the mask that decided it (times the
vote share in conflict groups); elsewhere it is the fill's own confidence. Pure numpy and scipy.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from .corrections import check_corrections, painted_mask
from .expand import ExpandOptions, Expansion, iter_expand
from .points import PointSet
from .progress import Progress
from .proposals import Candidates, MaskCrop, iter_candidates, sample_grid, upsample_crop

__all__ = ["HybridOptions", "MaskChoice", "choose_candidate", "iter_hybrid_expand",
           "resolve_conflicts"]


@dataclass(frozen=True)
class HybridOptions:
    """Settings of the hybrid expansion.

    Attributes
    ----------
    negatives : int
        Nearest points of other classes given to the proposer as negative clicks (0: none).
    min_iou : float
        Candidates with a lower predicted IoU are rejected.
    max_other_share : float
        Candidates whose contained points are more than this share of other classes are rejected.
    other_penalty : float
        Score penalty per share of other-class points inside a candidate.
    compactness_weight, area_weight : float
        Weights of ``ln(1 + C)`` and of the area fraction in the choice score.
    trim : bool
        Trim the kept mask away from the other-class points it contains.
    vote_neighbours : int
        Nearest competing points that vote on a conflict group with no point inside.
    batch_size : int
        Most points per batch (the points are split into batches of nearly equal sizes;
        progress is reported per batch). The choice rule runs on one batch while the proposer
        decodes the next ones, so small batches leave little un-overlapped work at the end.
    """

    negatives: int = 4
    min_iou: float = 0.5
    max_other_share: float = 0.5
    other_penalty: float = 1.0
    compactness_weight: float = 0.8
    area_weight: float = 1.4
    trim: bool = True
    vote_neighbours: int = 5
    batch_size: int = 4


@dataclass
class MaskChoice:
    """The outcome of the choice rule for one point.

    Attributes
    ----------
    index : int
        Chosen candidate, -1 when all were rejected.
    scores : (K,) ndarray
        Score of every candidate (-inf where rejected).
    reasons : list of str
        Per candidate: '' (eligible), 'low_iou', 'misses_point' or 'other_classes'.
    trimmed : bool
        Whether the chosen mask was trimmed away from other-class points.
    logits : (h, w) ndarray or None
        The chosen (possibly trimmed) logits.
    """

    index: int
    scores: np.ndarray
    reasons: list
    trimmed: bool = False
    logits: np.ndarray | None = None


def _shape_terms(masks: np.ndarray, cell: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Area fraction and compactness of (K, h, w) boolean masks on a grid of ``cell`` (dy, dx)."""
    dy, dx = cell
    k, h, w = masks.shape
    count = masks.reshape(k, -1).sum(axis=1).astype(np.float64)
    area_frac = count / (h * w)
    pad = np.zeros((k, h + 2, w + 2), dtype=bool)
    pad[:, 1:-1, 1:-1] = masks
    # edges between vertical neighbours have length dx, between horizontal ones dy
    between_rows = (pad[:, 1:, :] != pad[:, :-1, :]).reshape(k, -1).sum(axis=1)
    between_cols = (pad[:, :, 1:] != pad[:, :, :-1]).reshape(k, -1).sum(axis=1)
    perimeter = between_rows * dx + between_cols * dy
    area = count * dy * dx
    with np.errstate(divide="ignore", invalid="ignore"):
        comp = np.where(perimeter > 0, 2 * np.sqrt(np.pi * area) / perimeter, 0.0)
    return area_frac, np.minimum(1.0, comp)


def choose_candidate(
    logits: np.ndarray,
    iou: np.ndarray,
    own: int,
    rows: np.ndarray,
    cols: np.ndarray,
    labels: np.ndarray,
    image_shape: tuple[int, int],
    options: HybridOptions | None = None,
) -> MaskChoice:
    """Apply the choice rule to the candidates of point ``own``.

    Parameters
    ----------
    logits : (K, h, w) ndarray
        Candidate logits on the proposer's grid.
    iou : (K,) ndarray
        Predicted IoUs.
    own : int
        Index of the prompting point in ``rows``, ``cols``, ``labels``.
    rows, cols, labels : (P,) ndarray of int
        Pixel indices and classes of all labelled points.
    image_shape : tuple of int
    options : HybridOptions, optional

    Returns
    -------
    MaskChoice
    """
    opts = options or HybridOptions()
    logits = np.asarray(logits, dtype=np.float32)
    k, h, w = logits.shape
    m, n = image_shape
    inside = sample_grid(logits, rows, cols, image_shape) > 0  # (K, P)
    other = labels != labels[own]
    n_other = inside[:, other].sum(axis=1)
    n_all = inside.sum(axis=1)
    share = np.where(n_all > 0, n_other / np.maximum(n_all, 1), 0.0)
    area_frac, comp = _shape_terms(logits > 0, (m / h, n / w))
    scores = (iou.astype(np.float64) + opts.compactness_weight * np.log1p(comp)
              - opts.area_weight * area_frac - opts.other_penalty * share)
    reasons = []
    for j in range(k):
        if iou[j] < opts.min_iou:
            reasons.append("low_iou")
        elif not inside[j, own]:
            reasons.append("misses_point")
        elif share[j] > opts.max_other_share:
            reasons.append("other_classes")
        else:
            reasons.append("")
    eligible = np.array([r == "" for r in reasons])
    scores = np.where(eligible, scores, -np.inf)
    if not eligible.any():
        return MaskChoice(-1, scores, reasons)
    best = int(np.argmax(scores))
    chosen = logits[best].copy()
    trimmed = False
    if opts.trim and n_other[best] > 0:
        chosen = _trim(chosen, own, rows, cols, labels, inside[best], image_shape)
        trimmed = True
    return MaskChoice(best, scores, reasons, trimmed, chosen)


def _trim(
    logits: np.ndarray,
    own: int,
    rows: np.ndarray,
    cols: np.ndarray,
    labels: np.ndarray,
    inside: np.ndarray,
    image_shape: tuple[int, int],
) -> np.ndarray:
    """Drop grid cells nearer to an inside other-class point than to every inside own-class one."""
    h, w = logits.shape
    m, n = image_shape
    sy, sx = m / h, n / w
    on = logits > 0
    same = inside & (labels == labels[own])
    same[own] = True
    diff = inside & (labels != labels[own])

    if max(diff.sum(), same.sum()) > 128:  # many points: k-d trees
        cell_r, cell_c = np.nonzero(on)
        cells = np.c_[_cell_centres(cell_r, sy), _cell_centres(cell_c, sx)]

        def nearest(sel):
            return cKDTree(np.c_[rows[sel], cols[sel]].astype(np.float64)).query(cells)[0]

        drop = np.zeros_like(on)
        drop[cell_r, cell_c] = nearest(diff) < nearest(same)
    else:  # few points: exact squared distances, settled block by block where bounds allow
        drop = _nearer_to_other(on.shape, (sy, sx), (rows[same], cols[same]),
                                (rows[diff], cols[diff]), where=on)
    out = logits.copy()
    out[drop] = -32.0
    # keep only the piece holding the point
    comp, count = ndi.label(out > 0)
    if count > 1:
        gr = min(h - 1, max(0, int(np.floor((rows[own] + 0.5) / sy))))
        gc = min(w - 1, max(0, int(np.floor((cols[own] + 0.5) / sx))))
        keep = comp[gr, gc]
        if keep > 0:
            out[(comp > 0) & (comp != keep)] = -32.0
    return out


def _nearer_to_other(shape, cell, same, other, *, where=None, block: int = 8) -> np.ndarray:
    """Whether each grid cell's centre is strictly nearer to an ``other`` point than to all ``same``.

    Cells are grouped in blocks of ``block`` x ``block``. For each block, bounds of the squared
    distance to the nearest point of each set (from the block's extreme cell centres, with the
    same float arithmetic as the exact distances, so the bounds hold exactly) settle the whole
    block when one set is surely nearer; only the cells of the other blocks (along the boundary
    between the two sets) get exact distances.

    Parameters
    ----------
    shape : (int, int)
        (h, w) of the grid.
    cell : (float, float)
        Image pixels per grid cell along rows and columns.
    same, other : tuple of (P,) ndarrays
        (rows, cols) of the two point sets in image pixels; ``same`` is not empty.
    where : (h, w) ndarray of bool, optional
        The cells that are needed; the others are False.

    Returns
    -------
    (h, w) ndarray of bool
    """
    h, w = shape
    sy, sx = cell
    # each block's first and last cell centres, per block row and per block column (cells
    # beyond the grid only widen the bounds)
    first_r = np.arange(-(-h // block)) * block
    first_c = np.arange(-(-w // block)) * block
    y0, y1 = _cell_centres(first_r, sy), _cell_centres(first_r + block - 1, sy)
    x0, x1 = _cell_centres(first_c, sx), _cell_centres(first_c + block - 1, sx)

    def bounds(points):
        """Lower and upper bounds, per block, of the squared distance to the nearest point."""
        pr = np.asarray(points[0], dtype=np.float64)[None, :]
        pc = np.asarray(points[1], dtype=np.float64)[None, :]
        lo_y = np.maximum(np.maximum(y0[:, None] - pr, pr - y1[:, None]), 0.0) ** 2
        lo_x = np.maximum(np.maximum(x0[:, None] - pc, pc - x1[:, None]), 0.0) ** 2
        hi_y = np.maximum(np.abs(y0[:, None] - pr), np.abs(y1[:, None] - pr)) ** 2
        hi_x = np.maximum(np.abs(x0[:, None] - pc), np.abs(x1[:, None] - pc)) ** 2
        return ((lo_y[:, None, :] + lo_x[None, :, :]).min(axis=2),
                (hi_y[:, None, :] + hi_x[None, :, :]).min(axis=2))

    def cells(per_block):
        return np.repeat(np.repeat(per_block, block, axis=0), block, axis=1)[:h, :w]

    lo_same, hi_same = bounds(same)
    lo_other, hi_other = bounds(other)
    surely = hi_other < lo_same          # every cell of the block is nearer to ``other``
    unsure = ~surely & (lo_other < hi_same)
    out = cells(surely)
    exact = cells(unsure)
    if where is not None:
        out &= where
        exact &= where
    rr, cc = np.nonzero(exact)
    if rr.size:
        yr, xc = _cell_centres(rr, sy), _cell_centres(cc, sx)
        out[rr, cc] = _nearest_sq(yr, xc, *other) < _nearest_sq(yr, xc, *same)
    return out


def _cell_centres(index: np.ndarray, cell: float) -> np.ndarray:
    """Image coordinates of grid cell centres along one axis (``cell`` pixels per cell).

    The one expression for cell centres in the trimming, so that distance bounds and exact
    distances round alike.
    """
    return (index + 0.5) * cell - 0.5


def _nearest_sq(yr: np.ndarray, xc: np.ndarray, pr: np.ndarray, pc: np.ndarray) -> np.ndarray:
    """Squared distance from each (yr, xc) to the nearest of the few points (pr, pc)."""
    best = np.full(yr.shape, np.inf)
    dy = np.empty_like(yr)
    dx = np.empty_like(xc)
    for r, c in zip(pr.astype(np.float64), pc.astype(np.float64)):
        np.subtract(yr, r, out=dy)
        np.multiply(dy, dy, out=dy)
        np.subtract(xc, c, out=dx)
        np.multiply(dx, dx, out=dx)
        dy += dx
        np.minimum(best, dy, out=best)
    return best


def _nearest_negatives(coords: np.ndarray, labels: np.ndarray, k: int) -> list[np.ndarray]:
    """For every point, the (row, col) of its ``k`` nearest points of other classes."""
    p = coords.shape[0]
    out: list[np.ndarray] = []
    if k <= 0:
        return [np.zeros((0, 2)) for _ in range(p)]
    for start in range(0, p, 512):
        stop = min(p, start + 512)
        d = ((coords[start:stop, None, :] - coords[None, :, :]) ** 2).sum(axis=2)
        d[labels[start:stop, None] == labels[None, :]] = np.inf
        for i in range(stop - start):
            row = d[i]
            n_other = int(np.isfinite(row).sum())
            kk = min(k, n_other)
            if kk == 0:
                out.append(np.zeros((0, 2)))
                continue
            idx = np.argpartition(row, kk - 1)[:kk]
            idx = idx[np.argsort(row[idx], kind="stable")]
            out.append(coords[idx])
    return out


def resolve_conflicts(
    masks: list,
    coords: np.ndarray,
    labels: np.ndarray,
    image_shape: tuple[int, int],
    *,
    vote_neighbours: int = 5,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Paint accepted masks into a class map and settle the pixels claimed by several classes.

    Parameters
    ----------
    masks : list of (label, iou, MaskCrop)
        Accepted masks.
    coords : (P, 2) ndarray
        (row, col) of all labelled points (rounded pixels).
    labels : (P,) ndarray of int
        Their classes.
    image_shape : tuple of int
    vote_neighbours : int

    Returns
    -------
    known : (M, N) ndarray of int32
        Class per decided pixel, -1 where no mask covers it.
    confidence : (M, N) ndarray of float32
        Predicted IoU of the deciding masks (times the vote share in conflict groups), 0 elsewhere.
    info : dict
        ``conflict_groups`` and ``conflict_pixels``.
    """
    m, n = image_shape
    known = np.full((m, n), -1, dtype=np.int32)
    conf = np.zeros((m, n), dtype=np.float32)
    multi = np.zeros((m, n), dtype=bool)
    signature = np.zeros((m, n), dtype=np.uint64)
    rng = np.random.default_rng(12345)
    keys = rng.integers(1, np.iinfo(np.uint64).max, size=len(masks), dtype=np.uint64, endpoint=True)
    for key, (label, iou, crop) in zip(keys, masks):
        sl = crop.slices
        kn = known[sl]
        cf = conf[sl]
        mk = crop.mask
        clash = mk & (kn >= 0) & (kn != label)
        multi[sl] |= clash
        fresh = mk & (kn < 0)
        kn[fresh] = label
        same = mk & (kn == label)
        cf[same] = np.maximum(cf[same], np.float32(iou))
        sig = signature[sl]
        sig[mk] += key  # wraps around: a hash of the set of covering masks
    info = {"conflict_groups": 0, "conflict_pixels": int(multi.sum())}
    if not multi.any():
        return known, conf, info
    pr, pc = np.nonzero(multi)
    groups, inverse = np.unique(signature[pr, pc], return_inverse=True)
    inverse = inverse.reshape(-1)
    info["conflict_groups"] = int(groups.size)
    counts = np.bincount(inverse)
    cy = np.bincount(inverse, weights=pr) / counts
    cx = np.bincount(inverse, weights=pc) / counts
    order = np.argsort(inverse, kind="stable")
    starts = np.r_[0, np.cumsum(counts)]
    # points inside conflict pixels: which group they fall in
    prow = coords[:, 0].astype(np.int64)
    pcol = coords[:, 1].astype(np.int64)
    p_in_multi = multi[prow, pcol]
    p_group = np.full(labels.shape, -1, dtype=np.int64)
    if p_in_multi.any():
        p_group[p_in_multi] = np.searchsorted(groups, signature[prow[p_in_multi], pcol[p_in_multi]])
    classes_all = np.unique(labels)
    # which classes cover each group (read at one pixel of the group: coverage is identical)
    rep = order[starts[:-1]]
    rep_r, rep_c = pr[rep], pc[rep]
    covering = np.zeros((groups.size, classes_all.size), dtype=bool)
    for label, _, crop in masks:
        h, w = crop.mask.shape
        ok = (rep_r >= crop.r0) & (rep_r < crop.r0 + h) & (rep_c >= crop.c0) & (rep_c < crop.c0 + w)
        ok[ok] = crop.mask[rep_r[ok] - crop.r0, rep_c[ok] - crop.c0]
        ci = np.searchsorted(classes_all, label)
        if ci < classes_all.size and classes_all[ci] == label:
            covering[ok, ci] = True
    point_class = np.searchsorted(classes_all, labels)
    for g in range(groups.size):
        idx = order[starts[g]:starts[g + 1]]
        comp_sel = covering[g, point_class]
        voters = np.flatnonzero((p_group == g) & comp_sel)
        if voters.size == 0:
            cand = np.flatnonzero(comp_sel)
            d_c = np.hypot(coords[cand, 0] - cy[g], coords[cand, 1] - cx[g])
            voters = cand[np.argsort(d_c, kind="stable")[:vote_neighbours]]
        d = np.hypot(coords[voters, 0] - cy[g], coords[voters, 1] - cx[g])
        weights = 1.0 / (1.0 + d)
        tally = np.zeros(classes_all.size)
        np.add.at(tally, np.searchsorted(classes_all, labels[voters]), weights)
        win = int(np.argmax(tally))
        share = tally[win] / tally.sum() if tally.sum() > 0 else 0.0
        rr, cc = pr[idx], pc[idx]
        known[rr, cc] = classes_all[win]
        conf[rr, cc] *= np.float32(share)
    return known, conf, info


def iter_hybrid_expand(
    image: np.ndarray,
    points: PointSet,
    proposer,
    *,
    corrections: np.ndarray | None = None,
    options: ExpandOptions | None = None,
    hybrid: HybridOptions | None = None,
    prior_proba: np.ndarray | None = None,
    prior_classes: np.ndarray | None = None,
) -> Generator[Progress, None, Expansion]:
    """Hybrid expansion of ``points`` over ``image``: proposer masks, point votes, maskSLIC fill.

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray
    points : PointSet
        Labelled points inside the image.
    proposer : MaskProposer
        See :mod:`napari_sseg.core.proposals`.
    corrections : (M, N) ndarray of int, optional
        Pixels the user painted (class id; 255 for uint8, 65535 for uint16 = not painted).
        They override the proposer's masks and keep their class exactly; the fill uses them as
        in :func:`~napari_sseg.core.expand.iter_expand`. With corrections and no points the
        proposer is not run.
    options : ExpandOptions, optional
        Settings of the superpixel fill.
    hybrid : HybridOptions, optional
        Settings of the mask choice and conflicts.
    prior_proba, prior_classes : optional
        A survey model's class probabilities and their class ids: a third expert of the
        superpixel fill of what the masks leave (see :func:`~napari_sseg.core.expand.expand`).

    Yields
    ------
    Progress

    Returns
    -------
    Expansion
        ``labels`` (M, N) class ids, ``confidence`` (M, N) float32 and ``info`` with timings
        (``embedding``, ``decoding``, ``conflicts``, ``fill``) and mask counts.

    Raises
    ------
    ValueError
        If there are no points (and nothing painted) or points lie outside the image.
    """
    hopts = hybrid or HybridOptions()
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"image: expected (rows, cols[, channels]), got shape {img.shape}")
    m, n = img.shape[:2]
    painted = None
    if corrections is not None:
        painted = painted_mask(check_corrections(corrections, (m, n)))
        painted = painted if painted.any() else None
    if len(points) == 0:
        if painted is None:
            raise ValueError("no labelled points: at least one point is needed to expand")
        fill = yield from iter_expand(img, points, corrections=corrections, options=options,
                                      prior_proba=prior_proba, prior_classes=prior_classes)
        fill.info = {"method": "superpixel-graph", "points": 0, "note": "no points: the "
                     "proposer was not run", "fill": fill.info}
        return fill
    points.check_bounds((m, n))
    rows, cols = points.pixel_indices()
    labels = points.labels
    coords = np.stack([rows, cols], axis=1).astype(np.float64)
    p = len(points)
    bs = max(1, int(hopts.batch_size))
    n_batches = (p + bs - 1) // bs
    # batches of nearly equal sizes (25 points in batches of at most 4: 3, 4, 3, 4, 3, 4, 4), so
    # that a proposer decoding a batch in parallel never gets a lone leftover point
    bounds = [b * p // n_batches for b in range(n_batches + 1)]
    fill_steps = 4
    total = 1 + n_batches + 1 + fill_steps
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    yield Progress(0, total, "embedding image")
    t0 = time.perf_counter()
    proposer.set_image(img)
    timings["embedding"] = time.perf_counter() - t0

    negatives = _nearest_negatives(coords, labels, hopts.negatives)
    accepted: list[tuple[int, float, MaskCrop]] = []
    stats = {"accepted": 0, "trimmed": 0, "low_iou": 0, "misses_point": 0, "other_classes": 0,
             "empty": 0}
    t_wait = t_select = 0.0
    t0 = time.perf_counter()
    slices = [slice(bounds[b], bounds[b + 1]) for b in range(n_batches)]
    # the next batches decode (in the proposer's threads) while this one is chosen among
    stream = iter_candidates(proposer, ((coords[sel], negatives[sel]) for sel in slices))
    try:
        for b, sel in enumerate(slices):
            yield Progress(1 + b, total, f"masks for points {sel.start + 1}-{sel.stop} of {p}")
            t1 = time.perf_counter()
            cands: Candidates = next(stream)
            t2 = time.perf_counter()
            t_wait += t2 - t1
            for j, i in enumerate(range(sel.start, sel.stop)):
                choice = choose_candidate(cands.logits[j], cands.iou[j], i, rows, cols,
                                          labels, (m, n), hopts)
                if choice.index < 0:
                    for r in set(choice.reasons):
                        stats[r] += 1
                    continue
                crop = upsample_crop(choice.logits, (m, n))
                if crop is None:
                    stats["empty"] += 1
                    continue
                stats["accepted"] += 1
                stats["trimmed"] += int(choice.trimmed)
                quality = float(np.clip(cands.iou[j, choice.index], 0, 1))
                accepted.append((int(labels[i]), quality, crop))
            t_select += time.perf_counter() - t2
    finally:  # closed early (cancelled): no further batch is started
        stream.close()
    timings["decoding"] = time.perf_counter() - t0
    timings["decoding_wait"] = t_wait
    timings["decoding_choice"] = t_select

    yield Progress(1 + n_batches, total, "settling conflicts between classes")
    t0 = time.perf_counter()
    known, sam_conf, conflict_info = resolve_conflicts(
        accepted, coords, labels, (m, n), vote_neighbours=hopts.vote_neighbours)
    covered = known >= 0
    timings["conflicts"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    step0 = 2 + n_batches
    gen = iter_expand(img, points, known=known, corrections=corrections, options=options,
                      prior_proba=prior_proba, prior_classes=prior_classes)
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            fill: Expansion = stop.value
            break
        yield Progress(min(total, step0 + ev.step), total, f"superpixel fill: {ev.message}")
    timings["fill"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    confidence = fill.confidence
    confidence[covered] = sam_conf[covered]
    labels_out = fill.labels
    labels_out[rows, cols] = labels  # every labelled point keeps its class
    if painted is not None:  # painted pixels win over masks and points
        labels_out[painted] = np.asarray(corrections)[painted]
        confidence[painted] = 1.0
    info = {
        "method": "sam2+maskslic",
        "proposer": getattr(proposer, "name", type(proposer).__name__),
        "embedding_source": getattr(proposer, "embedding_source", None),
        "points": p,
        "masks": stats,
        "covered_fraction": float(covered.mean()),
        **conflict_info,
        "fill": fill.info,
        "options": asdict(hopts),
        "timings": timings,
    }
    yield Progress(total, total, "done")
    return Expansion(labels=labels_out, confidence=confidence, info=info)
