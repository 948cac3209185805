"""Suggest points: where the next labelled click helps the expansion most.

The acquisition follows the published ``dynamicPoints`` idea (exploitation of mask proposals
weighted by their area and damped near chosen points, plus exploration away from chosen points,
balanced by ``lam``; the published version also pulls points to proposal centres, here an option,
``interior_power``) and adds uncertainty from our own expansion: low confidence,
a small vote margin and disagreement between SAM2 masks and the superpixel fill (when the
expansion's ``info`` holds per-pixel ``"margin"`` or ``"disagreement"`` arrays in [0, 1]), the class
balance of the labelled points (optional) and distance in colour space from every labelled point.

Everything is computed on a coarse grid of at most ``SuggestOptions.max_cells`` cells (a cell is a
``factor x factor`` block of pixels); proposals are reduced to a centroid, an area and a per-cell
interior score, streamed one mask at a time, so memory does not depend on the number of proposals
and no pixels-by-proposals matrix is ever built. Points are chosen greedily, one at a time, each
pick updating the exploration, novelty and damping terms so that a batch spreads over distinct,
uncertain, unlabelled regions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .expand import Expansion
from .image import normalized_float
from .points import PointSet

__all__ = ["SuggestOptions", "suggest_points", "acquisition_map"]


@dataclass(frozen=True)
class SuggestOptions:
    """Settings of the acquisition.

    Attributes
    ----------
    max_cells : int
        The coarse grid has at most about this many cells.
    regions_per_point : float
        Without proposals, superpixel regions are made at about this many per point (labelled plus
        requested), at least ``min_regions``.
    min_regions : int
        Fewest superpixel regions used as proposals.
    lam : float
        Balance of exploitation (proposal centres) against exploration (distance to chosen points),
        as ``lambda`` in the published acquisition (which uses 0.5; 0.1 scored better here with
        the superpixel proposals, see ``benchmarks/results/suggest.md``).
    w_uncertainty : float
        Weight of the expansion's uncertainty (1 - confidence, small margin, disagreement).
    w_novelty : float
        Weight of the colour-space distance from every chosen point.
    w_balance : float
        Weight of class balance: cells the expansion gives a class with few labelled points score
        higher (mIoU weighs every class equally, so rare classes need points). Off by default: it
        helped a little on aerial tiles but cost about 3 mIoU points on EM membranes.
    area_power : float
        A proposal's weight is its area share to this power (1 is the published weighting).
    interior_power : float
        Within a proposal, a cell's exploitation is multiplied by its distance to the
        proposal's edge (relative to the deepest cell) to this power: 1 pulls points to
        proposal centres, as published; 0 (the default) weighs every cell of a proposal the
        same and leaves where inside it to the other terms. Centres keep points off thin
        structures, which lie on superpixel edges (EM membranes), and off class edges: at 25
        points, all images of a set, 2 seeds (``benchmarks/bench_suggest.py``), 0 against 1
        scored reef photos 44.6 against 42.0 mIoU (random points 33.1), EM 59.1 against 57.8
        (random 57.8), aerial tiles (every 2nd) 47.6 against 47.8 (random 44.4).
    fraction : float
        Fraction of the batch taken greedily from the acquisition map; the rest are drawn at random
        (seeded) from unchosen cells with probability proportional to the map.
    """

    max_cells: int = 16384
    regions_per_point: float = 3.0
    min_regions: int = 48
    lam: float = 0.1
    w_uncertainty: float = 1.0
    w_novelty: float = 1.0
    w_balance: float = 0.0
    area_power: float = 1.0
    interior_power: float = 0.0
    fraction: float = 1.0


def suggest_points(
    image: np.ndarray,
    points: PointSet,
    expansion: Expansion | None,
    n: int,
    *,
    ignore_mask: np.ndarray | None = None,
    seed: int = 0,
    proposals=None,
    options: SuggestOptions | None = None,
) -> np.ndarray:
    """Propose the next ``n`` points to label.

    Parameters
    ----------
    image : (M, N[, C]) ndarray
        The image being labelled.
    points : PointSet
        Points labelled so far (may be empty).
    expansion : Expansion or None
        The current expansion of ``points``; ``None`` (for example before the first point) leaves
        out the uncertainty terms.
    n : int
        Number of points wanted.
    ignore_mask : (M, N) ndarray of bool, optional
        Pixels never to suggest (True = ignore).
    seed : int
        Seed of the tie-breaking jitter and of the random part of the batch; the result is
        deterministic for a given seed.
    proposals : (M, N) ndarray of int or iterable of (M, N) bool ndarrays, optional
        Mask proposals: a label image (0 = no proposal) or masks that may overlap (for example
        SAM2's automatic masks), read one at a time. Without them, superpixel regions are used.
    options : SuggestOptions, optional

    Returns
    -------
    (K, 2) ndarray of float64
        (row, col) pixel coordinates of the suggestions, ``K <= n`` (fewer only when fewer free
        pixels exist), none on an existing point, on another suggestion or in ``ignore_mask``.

    Raises
    ------
    ValueError
        If ``n`` is negative, or the shapes of ``expansion``, ``ignore_mask`` or ``proposals``
        do not match the image.
    """
    if int(n) != n or n < 0:
        raise ValueError(f"number of points to suggest must be a non-negative integer, got {n!r}")
    opts = options or SuggestOptions()
    state = _State(image, points, expansion, ignore_mask, proposals, int(n), opts)
    rng = np.random.default_rng(seed)
    return state.pick(int(n), rng)


def acquisition_map(
    image: np.ndarray,
    points: PointSet,
    expansion: Expansion | None,
    *,
    ignore_mask: np.ndarray | None = None,
    proposals=None,
    options: SuggestOptions | None = None,
) -> np.ndarray:
    """Acquisition value of every pixel for display (higher = a more useful next click).

    The map is computed on the coarse grid and brought back to full resolution by repeating each
    cell over its ``factor x factor`` block (nearest-neighbour upsampling).

    Parameters
    ----------
    image, points, expansion, ignore_mask, proposals, options
        As for :func:`suggest_points`.

    Returns
    -------
    (M, N) ndarray of float32
        Values in [0, 1]; 0 on ignored pixels and on cells holding a point.
    """
    opts = options or SuggestOptions()
    state = _State(image, points, expansion, ignore_mask, proposals, 1, opts)
    coarse = state.score()
    coarse = np.where(state.free, coarse, 0).astype(np.float32)
    hi = coarse.max()
    if hi > 0:
        coarse /= hi
    f = state.factor
    full = np.repeat(np.repeat(coarse, f, axis=0), f, axis=1)
    return np.ascontiguousarray(full[: state.shape[0], : state.shape[1]])


def _minmax(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if not valid.any():
        return np.zeros_like(x)
    lo, hi = x[valid].min(), x[valid].max()
    if hi <= lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


class _State:
    """Coarse-grid terms of the acquisition and the greedy picker."""

    def __init__(self, image, points: PointSet, expansion, ignore_mask, proposals, n: int,
                 opts: SuggestOptions):
        from .image import as_channels
        from .superpixels import colour_features

        self.opts = opts
        arr = as_channels(image)
        m, nn = arr.shape[:2]
        self.shape = (m, nn)
        points.check_bounds((m, nn))
        f = max(1, int(np.ceil(np.sqrt(m * nn / opts.max_cells))))
        self.factor = f
        h, w = -(-m // f), -(-nn // f)
        self.grid = (h, w)
        # representative pixel of each cell: its centre (clipped at the far edges)
        self.rows = np.minimum(np.arange(h) * f + f // 2, m - 1)
        self.cols = np.minimum(np.arange(w) * f + f // 2, nn - 1)
        # cell features: the mean of a 2 x 2 lattice of pixels inside each cell (reading only
        # 4 pixels per cell keeps this cheap at any image size), normalised together
        offs = sorted({f // 4, (3 * f) // 4})
        samples = [arr[np.ix_(np.minimum(np.arange(h) * f + a, m - 1),
                              np.minimum(np.arange(w) * f + b, nn - 1))]
                   for a in offs for b in offs]
        norm = normalized_float(np.concatenate(samples, axis=0))
        img = norm.reshape(len(samples), h, w, -1).mean(axis=0)
        self.feats = colour_features(img).astype(np.float32)

        free = np.ones((h, w), dtype=bool)
        if ignore_mask is not None:
            ign = np.asarray(ignore_mask)
            if ign.shape != (m, nn):
                raise ValueError(f"ignore mask of shape {ign.shape} does not match image {(m, nn)}")
            free &= ~ign.astype(bool)[np.ix_(self.rows, self.cols)]
        pr, pc = points.pixel_indices()
        self.point_cells = np.stack([pr // f, pc // f], axis=1).reshape(-1, 2)
        free[self.point_cells[:, 0], self.point_cells[:, 1]] = False
        self.free = free

        rr, cc = np.mgrid[0:h, 0:w]
        self.rr = rr.astype(np.float32)
        self.cc = cc.astype(np.float32)
        self.diag = float(np.hypot(h, w))

        # exploration: distance to the nearest chosen point (border acts as a weak chosen point)
        border = np.minimum(np.minimum(rr, h - 1 - rr), np.minimum(cc, w - 1 - cc))
        border = border.astype(np.float32)
        self.dist = 2.0 * (border + 1.0)
        if len(self.point_cells):
            from scipy import ndimage as ndi

            away = np.ones((h, w), dtype=bool)
            away[self.point_cells[:, 0], self.point_cells[:, 1]] = False
            edt = ndi.distance_transform_edt(away).astype(np.float32)
            np.minimum(self.dist, edt, out=self.dist)

        # uncertainty of the expansion
        self.uncert = np.zeros((h, w), dtype=np.float32)
        self.pred = None  # predicted class index of each cell
        if expansion is not None:
            self.uncert = self._uncertainty(expansion)
            lab = np.asarray(expansion.labels)
            if lab.shape != self.shape:
                raise ValueError(
                    f"expansion labels of shape {lab.shape} do not match image {self.shape}"
                )
            cls, inv = np.unique(lab[np.ix_(self.rows, self.cols)], return_inverse=True)
            self.pred = inv.reshape(h, w)
            known = np.searchsorted(cls, points.labels)
            ok = (known < cls.size) & (cls[np.minimum(known, cls.size - 1)] == points.labels)
            self.class_count = np.bincount(known[ok], minlength=cls.size).astype(np.float64)

        # exploitation: proposal regions and their values
        self._proposals(proposals, len(points) + n)

        # novelty: colour distance from every chosen point, on region-smoothed features
        flat = self.nfeats.reshape(-1, self.nfeats.shape[2])
        self.fscale = float(np.sqrt(np.mean(np.var(flat, axis=0)) * flat.shape[1])) or 1.0
        self.fdist = np.full((h, w), np.inf, dtype=np.float32)
        if len(self.point_cells):
            # nearest labelled colour of every cell, in chunks of points (bounded memory)
            flat = flat.astype(np.float64)
            sq = (flat**2).sum(axis=1)
            ref_all = self.nfeats[self.point_cells[:, 0], self.point_cells[:, 1]].astype(np.float64)
            best = np.full(flat.shape[0], np.inf)
            for start in range(0, len(ref_all), 64):
                ref = ref_all[start:start + 64]
                d2 = sq[:, None] - 2 * flat @ ref.T + (ref**2).sum(axis=1)[None]
                np.minimum(best, d2.min(axis=1), out=best)
            self.fdist = (np.sqrt(np.maximum(best, 0)) / self.fscale).astype(np.float32)
            self.fdist = self.fdist.reshape(h, w)
        self.chosen: list[tuple[int, int]] = []

    # -- terms -------------------------------------------------------------------------------
    def _add_distance(self, r: int, c: int) -> None:
        d = np.hypot(self.rr - r, self.cc - c)
        np.minimum(self.dist, d, out=self.dist)

    def _add_novelty(self, r: int, c: int) -> None:
        d = np.sqrt(((self.nfeats - self.nfeats[r, c]) ** 2).sum(axis=2)) / self.fscale
        np.minimum(self.fdist, d, out=self.fdist)

    def _uncertainty(self, expansion: Expansion) -> np.ndarray:
        conf = np.asarray(expansion.confidence)
        if conf.shape != self.shape:
            raise ValueError(
                f"expansion confidence of shape {conf.shape} does not match image {self.shape}"
            )
        c = conf[np.ix_(self.rows, self.cols)].astype(np.float32)
        info = expansion.info if isinstance(expansion.info, dict) else {}
        n_classes = max(2, len(info.get("classes", [])))
        u = np.clip((1.0 - c) / (1.0 - 1.0 / n_classes), 0, 1)
        margin = info.get("margin")
        if isinstance(margin, np.ndarray) and margin.shape == self.shape:
            u = np.maximum(u, 1.0 - np.clip(margin[np.ix_(self.rows, self.cols)], 0, 1))
        disagree = info.get("disagreement")
        if isinstance(disagree, np.ndarray) and disagree.shape == self.shape:
            dis = disagree[np.ix_(self.rows, self.cols)].astype(np.float32)
            u = np.maximum(u, np.clip(dis, 0, 1))
        return u.astype(np.float32)

    def _proposals(self, proposals, n_total: int) -> None:
        from scipy import ndimage as ndi

        from .superpixels import region_means, relabel_sequential, slic_superpixels

        h, w = self.grid
        self.nfeats = self.feats
        if proposals is None:
            k = max(self.opts.min_regions, int(round(self.opts.regions_per_point * n_total)))
            # nearly regular regions (see slic_superpixels on the compactness scale):
            # colour-adherent superpixels made the suggestions worse than random points on
            # coral at 25 points (-9 mIoU in benchmarks/bench_suggest.py)
            seg = slic_superpixels(self.feats, n_segments=k, compactness=10.0)
            label_img, _ = relabel_sequential(seg)
            masks: Iterable[np.ndarray] | None = None
        elif isinstance(proposals, np.ndarray) and np.issubdtype(proposals.dtype, np.integer):
            if proposals.shape != self.shape:
                raise ValueError(
                    f"proposal label image of shape {proposals.shape} does not match image "
                    f"{self.shape}"
                )
            label_img, _ = relabel_sequential(proposals[np.ix_(self.rows, self.cols)])
            masks = None
        else:
            label_img = None
            masks = proposals
        # every region: centroid, area share and a per-cell interior score; streamed for masks
        self.region_of = np.full((h, w), -1, dtype=np.int64)  # best region of each cell
        self.interior = np.zeros((h, w), dtype=np.float32)
        cents, areas = [], []
        if label_img is not None:
            k = int(label_img.max()) + 1
            if k > 0:
                inside = label_img >= 0
                idx = np.where(inside, label_img, 0)
                if self.opts.interior_power:  # the score reads the interior only then
                    edge = np.zeros((h, w), dtype=bool)
                    edge[:, :-1] |= label_img[:, :-1] != label_img[:, 1:]
                    edge[:, 1:] |= label_img[:, :-1] != label_img[:, 1:]
                    edge[:-1] |= label_img[:-1] != label_img[1:]
                    edge[1:] |= label_img[:-1] != label_img[1:]
                    dt = ndi.distance_transform_edt(~edge).astype(np.float32) + 1.0
                    peak = np.asarray(ndi.maximum(dt, labels=label_img + 1,
                                                  index=np.arange(1, k + 1)),
                                      dtype=np.float32).reshape(-1)
                    peak[peak <= 0] = 1.0
                    self.interior = np.where(inside, dt / peak[idx], 0).astype(np.float32)
                self.region_of = np.where(inside, label_img, -1)
                if proposals is None:
                    means = region_means(label_img, self.feats, k).astype(np.float32)
                    self.nfeats = np.where(inside[:, :, None], means[idx], self.feats)
                cnt = np.bincount(idx[inside], minlength=k).astype(np.float64)
                sr = np.bincount(idx[inside], weights=self.rr[inside], minlength=k)
                sc = np.bincount(idx[inside], weights=self.cc[inside], minlength=k)
                cnt1 = np.maximum(cnt, 1)
                cents = list(np.stack([sr / cnt1, sc / cnt1], axis=1))
                areas = list(cnt / (h * w))
        else:
            best = np.full((h, w), -1.0, dtype=np.float32)
            for i, mask in enumerate(masks):
                mk = np.asarray(mask)
                if mk.shape != self.shape:
                    raise ValueError(
                        f"proposal mask #{i} of shape {mk.shape} does not match image {self.shape}"
                    )
                small = mk.astype(bool)[np.ix_(self.rows, self.cols)]
                if not small.any():
                    continue
                ys, xs = np.nonzero(small)
                r0, r1, c0, c1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
                box = np.pad(small[r0:r1, c0:c1], 1)
                dt = ndi.distance_transform_edt(box)[1:-1, 1:-1].astype(np.float32)
                inter = dt / dt.max()
                area = float(small.sum()) / (h * w)
                j = len(cents)
                cents.append(np.array([ys.mean(), xs.mean()]))
                areas.append(area)
                # a cell keeps the proposal that scores it highest (area-weighted interior)
                val = inter * area ** self.opts.area_power
                sub = best[r0:r1, c0:c1]
                take = small[r0:r1, c0:c1] & (val > sub)
                sub[take] = val[take]
                self.region_of[r0:r1, c0:c1][take] = j
                self.interior[r0:r1, c0:c1][take] = inter[take]
        self.cents = np.asarray(cents, dtype=np.float64).reshape(-1, 2)
        self.areas = np.asarray(areas, dtype=np.float64)
        self.region_damp = np.ones(len(self.areas))
        for r, c in self.point_cells:
            self._damp(r, c)

    def _damp(self, r: int, c: int) -> None:
        if not len(self.areas):
            return
        # damping radius follows the region's size (on the coarse grid) so a point inside a region
        # covers it; the published 6-pixel damping is the same idea at full resolution
        sigma = np.maximum(np.sqrt(self.areas * self.grid[0] * self.grid[1]) / 2.0, 1.0)
        d2 = (self.cents[:, 0] - r) ** 2 + (self.cents[:, 1] - c) ** 2
        self.region_damp *= 1.0 - np.exp(-d2 / (2 * sigma**2))
        reg = self.region_of[r, c]
        if reg >= 0:
            self.region_damp[reg] *= 0.05

    def score(self) -> np.ndarray:
        """Acquisition value of every cell for the current chosen points."""
        o = self.opts
        valid = self.free
        if len(self.areas):
            value = (self.areas ** o.area_power) * self.region_damp
            reg = self.region_of
            exploit = np.where(reg >= 0, value[np.maximum(reg, 0)], 0)
            if o.interior_power:
                exploit = exploit * self.interior ** o.interior_power
            exploit = _minmax(exploit, valid)
        else:
            exploit = np.zeros(self.grid, dtype=np.float32)
        explore = _minmax(self.dist, valid)
        score = o.lam * exploit + (1 - o.lam) * explore
        if np.isfinite(self.fdist).any():
            score = score + o.w_novelty * _minmax(np.minimum(self.fdist, 10.0), valid)
        if self.uncert.any():
            score = score + o.w_uncertainty * self.uncert
        if self.pred is not None and o.w_balance:
            rarity = 1.0 / np.sqrt(1.0 + self.class_count)
            score = score + o.w_balance * _minmax(rarity[self.pred], valid)
        return score.astype(np.float32)

    # -- picking -----------------------------------------------------------------------------
    def _choose(self, r: int, c: int) -> None:
        self.free[r, c] = False
        self._add_distance(r, c)
        self._add_novelty(r, c)
        self._damp(r, c)
        # uncertainty near a new point is mostly resolved by it
        s = max(1.0, 0.03 * self.diag)
        if self.pred is not None:
            self.class_count[self.pred[r, c]] += 1
        self.uncert *= 1.0 - np.exp(-((self.rr - r) ** 2 + (self.cc - c) ** 2) / (2 * s * s))
        self.chosen.append((r, c))

    def pick(self, n: int, rng: np.random.Generator) -> np.ndarray:
        jitter = rng.uniform(0, 1e-4, size=self.grid).astype(np.float32)
        n_greedy = int(np.ceil(n * self.opts.fraction))
        for i in range(n):
            if not self.free.any():
                break
            s = self.score() + jitter
            s[~self.free] = -np.inf
            if i < n_greedy:
                flat = int(np.argmax(s))
            else:
                p = np.where(self.free, np.maximum(s, 0) + 1e-6, 0).ravel().astype(np.float64)
                flat = int(rng.choice(p.size, p=p / p.sum()))
            r, c = divmod(flat, self.grid[1])
            self._choose(r, c)
        if not self.chosen:
            return np.zeros((0, 2), dtype=np.float64)
        cells = np.asarray(self.chosen)
        return np.stack([self.rows[cells[:, 0]], self.cols[cells[:, 1]]], axis=1).astype(np.float64)
