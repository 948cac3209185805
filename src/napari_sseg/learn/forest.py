"""The default survey model: a random forest on the filter bank, stored as plain arrays.

The forest is scikit-learn's :class:`~sklearn.ensemble.RandomForestClassifier` (class-balanced,
grown a few trees at a time so a time budget can stop it with the trees grown so far). It is
saved without pickle: every tree's node table (a structured array of numbers) and leaf class
fractions go into one ``.npz`` read with ``allow_pickle=False``, and are put back into
scikit-learn's tree objects on load, so a model file from anyone cannot run code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .card import ModelError
from .features import features
from .model import SurveyModel

__all__ = ["Forest", "ForestModel", "FOREST_FILE", "MAX_SMOOTHING"]

FOREST_FILE = "forest.npz"
#: The forest's probability smoothing (working pixels) must be below this.
MAX_SMOOTHING = 64
_NODE_FIELDS = ("left_child", "right_child", "feature", "threshold", "impurity",
                "n_node_samples", "weighted_n_node_samples", "missing_go_to_left")


class Forest:
    """A fitted forest: per-tree node tables and leaf class fractions.

    Parameters
    ----------
    trees : list of sklearn.tree._tree.Tree
    n_features, n_classes : int
    """

    def __init__(self, trees: list, n_features: int, n_classes: int):
        self.trees = trees
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)

    # ---------------------------------------------------------------------------- training

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        *,
        n_trees: int = 100,
        max_depth: int | None = 16,
        min_samples_leaf: int = 2,
        seed: int = 0,
        n_jobs: int = 2,
        deadline: float | None = None,
        step: int = 10,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[int, int], None] | None = None,
    ) -> "Forest":
        """Grow a class-balanced random forest on rows ``x`` with class indices ``y``.

        Trees are grown ``step`` at a time; once ``clock()`` passes ``deadline`` no more are
        added (at least ``step`` trees are always grown). ``progress(done, total)`` is
        called after each step.
        """
        from sklearn.ensemble import RandomForestClassifier

        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        present, counts = np.unique(y, return_counts=True)
        # class-balanced: every class weighs as much as the others in all (computed once, as
        # growing trees in steps refits on the same data)
        weights = {int(c): float(y.size / (present.size * k)) for c, k in zip(present, counts)}
        rf = RandomForestClassifier(n_estimators=0, max_depth=max_depth,
                                    min_samples_leaf=min_samples_leaf, max_features="sqrt",
                                    class_weight=weights, n_jobs=n_jobs, random_state=seed,
                                    warm_start=True)
        done = 0
        while done < n_trees:
            done = min(n_trees, done + step)
            rf.set_params(n_estimators=done)
            rf.fit(x, y)
            if progress is not None:
                progress(done, n_trees)
            if deadline is not None and clock() > deadline:
                break
        trees = []
        for est in rf.estimators_:
            trees.append(_widen(est.tree_, present, n_classes, x.shape[1]))
        return cls(trees, x.shape[1], n_classes)

    # -------------------------------------------------------------------------- prediction

    def predict_proba(self, x: np.ndarray, *, n_jobs: int = 2) -> np.ndarray:
        """(S, K) float32 mean leaf class fractions of the trees for rows ``x`` (S, F)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape (S, {self.n_features}), got {x.shape}")
        total = np.zeros((x.shape[0], self.n_classes), dtype=np.float64)

        def one(tree):
            p = tree.predict(x)[:, : self.n_classes]
            s = p.sum(axis=1, keepdims=True)
            return p / np.where(s > 0, s, 1)

        if n_jobs > 1 and len(self.trees) > 1 and x.shape[0] > 10_000:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n_jobs) as pool:  # tree traversal releases the GIL
                for p in pool.map(one, self.trees):
                    total += p
        else:
            for tree in self.trees:
                total += one(tree)
        return (total / max(1, len(self.trees))).astype(np.float32)

    # ------------------------------------------------------------------------------- files

    def save(self, path: str | os.PathLike) -> Path:
        """Write the forest to ``path`` (``.npz``, no pickled objects) atomically."""
        from ..io.atomic import atomic_open

        states = [t.__getstate__() for t in self.trees]
        counts = np.array([s["node_count"] for s in states], dtype=np.int64)
        arrays = {
            "n_features": np.int64(self.n_features),
            "n_classes": np.int64(self.n_classes),
            "max_depth": np.array([s["max_depth"] for s in states], dtype=np.int64),
            "node_count": counts,
            "values": np.concatenate([s["values"].reshape(-1, self.n_classes)
                                      for s in states]).astype(np.float64),
        }
        nodes = np.concatenate([s["nodes"] for s in states])
        for name in _NODE_FIELDS:
            arrays[f"node_{name}"] = np.ascontiguousarray(nodes[name])
        path = Path(path)
        with atomic_open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Forest":
        """Read a forest written by :meth:`save` (``allow_pickle=False``).

        Raises
        ------
        ModelError
            Naming the file, when it is missing, truncated or not a forest of this format.
        """
        from sklearn.tree._tree import Tree

        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as exc:  # zip or array errors: truncated or not an npz
            raise ModelError(f"{path}: cannot read the forest (truncated or not a napari-sseg "
                             f"forest file?): {exc}") from exc
        try:
            n_features, n_classes = int(data["n_features"]), int(data["n_classes"])
            counts = data["node_count"]
            ends = np.cumsum(counts)
            starts = ends - counts
            dtype = _node_dtype()
            trees = []
            for i, (a, b) in enumerate(zip(starts, ends)):
                nodes = np.zeros(int(b - a), dtype=dtype)
                for name in _NODE_FIELDS:
                    if name in dtype.names:
                        nodes[name] = data[f"node_{name}"][a:b]
                tree = Tree(n_features, np.array([n_classes], dtype=np.intp), 1)
                tree.__setstate__({"max_depth": int(data["max_depth"][i]),
                                   "node_count": int(b - a), "nodes": nodes,
                                   "values": np.ascontiguousarray(
                                       data["values"][a:b].reshape(-1, 1, n_classes))})
                trees.append(tree)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise ModelError(f"{path}: not a valid napari-sseg forest: {exc}") from exc
        return cls(trees, n_features, n_classes)


class ForestModel(SurveyModel):
    """A survey model whose pixels are classified by a :class:`Forest` on the filter bank.

    The forest classifies each pixel on its own; its probabilities are then smoothed by a
    Gaussian of the card's ``forest.smoothing`` working pixels (0 in cards that predate it).
    """

    def __init__(self, card: dict, folder: Path | None, forest: Forest):
        super().__init__(card, folder)
        self.forest = forest
        smoothing = card.get("training", {}).get("forest", {}).get("smoothing", 0.0)
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not (
                0 <= smoothing < MAX_SMOOTHING):
            raise ModelError(f"{folder}: the card's forest smoothing {smoothing!r} is not a "
                             f"number of working pixels in [0, {MAX_SMOOTHING})")
        self.smoothing = float(smoothing)
        self.halo = max(self.spec.halo, int(np.ceil(3 * self.smoothing)))
        if forest.n_classes != self.classes.size:
            raise ModelError(f"{folder}: the forest has {forest.n_classes} classes, its card "
                             f"{self.classes.size}")

    def proba_small(self, small: np.ndarray) -> np.ndarray:
        feats = features(small, self.spec)
        h, w, nf = feats.shape
        if nf != self.forest.n_features:
            raise ModelError(f"{self.where}: the images give {nf} features, the forest was "
                             f"trained on {self.forest.n_features}")
        proba = self.forest.predict_proba(feats.reshape(-1, nf)).reshape(h, w, -1)
        if self.smoothing > 0:
            from scipy import ndimage as ndi

            proba = ndi.gaussian_filter(proba, (self.smoothing, self.smoothing, 0),
                                        truncate=3.0)
        return proba


def _node_dtype() -> np.dtype:
    """The node record dtype of the installed scikit-learn."""
    from sklearn.tree._tree import NODE_DTYPE

    return np.dtype(NODE_DTYPE)


def _widen(tree, present: np.ndarray, n_classes: int, n_features: int):
    """A copy of ``tree`` whose leaf fractions cover all ``n_classes`` (absent classes 0)."""
    from sklearn.tree._tree import Tree

    state = tree.__getstate__()
    values = state["values"].reshape(state["node_count"], -1)
    wide = np.zeros((values.shape[0], 1, n_classes), dtype=np.float64)
    wide[:, 0, present] = values
    out = Tree(n_features, np.array([n_classes], dtype=np.intp), 1)
    out.__setstate__({**state, "values": wide})
    return out
