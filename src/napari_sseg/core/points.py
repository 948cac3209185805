"""Point sets: (row, col) coordinates with integer class ids, optional class names and planes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PointSet", "PointsOutOfBoundsError"]


class PointsOutOfBoundsError(ValueError):
    """Raised when points fall outside the image; ``indices`` lists the offending points."""

    def __init__(self, message: str, indices: np.ndarray):
        super().__init__(message)
        self.indices = np.asarray(indices)


@dataclass(frozen=True)
class PointSet:
    """Class-labelled points in pixel coordinates.

    Parameters
    ----------
    coords : (N, 2) array_like of float
        (row, col) pixel coordinates. Pixel ``(r, c)`` covers ``[r - 0.5, r + 0.5)``, so a
        coordinate is rounded to the nearest pixel index.
    labels : (N,) array_like of int
        Class id of each point (non-negative).
    class_names : dict of int to str, optional
        Human-readable class names keyed by class id.
    planes : (N,) array_like of int, optional
        Plane (z or t index) of each point in a stack; ``None`` for points on a 2D image.

    Raises
    ------
    ValueError
        If shapes disagree, coordinates are not finite or labels are negative.
    """

    coords: np.ndarray
    labels: np.ndarray
    class_names: dict[int, str] = field(default_factory=dict)
    planes: np.ndarray | None = None

    def __post_init__(self) -> None:
        coords = np.array(self.coords, dtype=np.float64)  # a copy: never freeze the caller's array
        if coords.size == 0:
            coords = coords.reshape(0, 2)
        labels = np.asarray(self.labels)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise ValueError(f"coords must have shape (N, 2) of (row, col), got {coords.shape}")
        if labels.ndim != 1 or labels.shape[0] != coords.shape[0]:
            raise ValueError(
                f"labels must have shape ({coords.shape[0]},) to match coords, got {labels.shape}"
            )
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                raise ValueError("labels must be integer class ids")
        labels = labels.astype(np.int64)  # always a copy
        bad = ~np.isfinite(coords).all(axis=1)
        if bad.any():
            raise ValueError(
                f"coordinates must be finite; non-finite at point indices {np.flatnonzero(bad).tolist()}"
            )
        if labels.size and labels.min() < 0:
            raise ValueError(
                f"class ids must be >= 0; negative at point indices {np.flatnonzero(labels < 0).tolist()}"
            )
        if self.planes is not None:
            planes = np.asarray(self.planes)
            if planes.shape != labels.shape:
                raise ValueError(f"planes must have shape {labels.shape} to match the points, "
                                 f"got {planes.shape}")
            if planes.size and (not np.all(np.isfinite(planes.astype(np.float64)))
                                or np.any(planes != np.round(planes))):
                raise ValueError("planes must be integer plane indices")
            planes = planes.astype(np.int64)  # always a copy
            planes.setflags(write=False)
            object.__setattr__(self, "planes", planes)
        coords.setflags(write=False)
        labels.setflags(write=False)
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", {int(k): str(v) for k, v in self.class_names.items()})

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def classes(self) -> np.ndarray:
        """Sorted unique class ids present in the set."""
        return np.unique(self.labels)

    def pixel_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Rounded integer (rows, cols) of every point."""
        rc = np.floor(self.coords + 0.5).astype(np.int64)
        return rc[:, 0], rc[:, 1]

    def outside(self, shape: tuple[int, ...]) -> np.ndarray:
        """Indices of points whose pixel lies outside an image of ``shape`` (rows, cols, ...)."""
        rows, cols = self.pixel_indices()
        bad = (rows < 0) | (rows >= shape[0]) | (cols < 0) | (cols >= shape[1])
        return np.flatnonzero(bad)

    def check_bounds(self, shape: tuple[int, ...], *, source: str = "points") -> None:
        """Raise :class:`PointsOutOfBoundsError` naming the points outside ``shape``."""
        bad = self.outside(shape)
        if bad.size:
            shown = ", ".join(
                f"#{i} (row={self.coords[i, 0]:g}, col={self.coords[i, 1]:g})" for i in bad[:10]
            )
            more = f" and {bad.size - 10} more" if bad.size > 10 else ""
            raise PointsOutOfBoundsError(
                f"{source}: {bad.size} point(s) outside the image of {shape[0]} rows x "
                f"{shape[1]} columns: {shown}{more}",
                bad,
            )

    def clipped(self, shape: tuple[int, ...]) -> "PointSet":
        """A copy with coordinates clipped into an image of ``shape``."""
        coords = np.clip(self.coords, 0, [shape[0] - 1, shape[1] - 1])
        return PointSet(coords, self.labels, self.class_names, self.planes)

    def subset(self, index: np.ndarray) -> "PointSet":
        """A copy holding only the points selected by ``index`` (mask or indices)."""
        planes = None if self.planes is None else self.planes[index]
        return PointSet(self.coords[index], self.labels[index], self.class_names, planes)

    def on_plane(self, plane: int) -> "PointSet":
        """The points of one plane, as a 2D point set (no planes)."""
        if self.planes is None:
            raise ValueError("these points have no planes")
        sel = self.planes == int(plane)
        return PointSet(self.coords[sel], self.labels[sel], self.class_names)

    def appended(self, coords: np.ndarray, labels: np.ndarray,
                 planes: np.ndarray | None = None) -> "PointSet":
        """A copy with extra points appended (with their ``planes`` when the set has planes)."""
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        if (self.planes is None) != (planes is None) and len(self) and len(coords):
            raise ValueError("points with planes and points without cannot be mixed")
        new_planes = None
        if planes is not None:
            old = self.planes if self.planes is not None else np.zeros(0, np.int64)
            new_planes = np.concatenate([old, np.asarray(planes, dtype=np.int64).reshape(-1)])
        elif self.planes is not None:
            new_planes = self.planes if not len(coords) else None
        return PointSet(
            np.concatenate([self.coords, coords]),
            np.concatenate([self.labels, np.asarray(labels, dtype=np.int64).reshape(-1)]),
            self.class_names,
            new_planes,
        )

    @classmethod
    def empty(cls, class_names: dict[int, str] | None = None) -> "PointSet":
        """A point set with no points."""
        return cls(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), class_names or {})
