import numpy as np
import pytest

from napari_sseg.core.points import PointSet, PointsOutOfBoundsError


def test_rounding_and_classes():
    ps = PointSet([[0.4, 1.6], [2.5, 3.49]], [2, 0], {0: "a", 2: "b"})
    rows, cols = ps.pixel_indices()
    assert rows.tolist() == [0, 3] and cols.tolist() == [2, 3]
    assert ps.classes.tolist() == [0, 2]
    assert len(ps) == 2
    assert ps.class_names == {0: "a", 2: "b"}


def test_arrays_are_read_only_copies():
    coords = np.array([[1.0, 2.0]])
    ps = PointSet(coords, [1])
    coords[0, 0] = 99
    assert ps.coords[0, 0] == 1.0
    with pytest.raises(ValueError):
        ps.coords[0, 0] = 5


@pytest.mark.parametrize(
    "coords, labels, match",
    [
        ([[1, 2, 3]], [1], r"shape \(N, 2\)"),
        ([[1, 2]], [1, 2], "labels must have shape"),
        ([[np.nan, 2]], [1], "non-finite at point indices \\[0\\]"),
        ([[1, 2], [3, 4]], [1, -1], "negative at point indices \\[1\\]"),
        ([[1, 2]], [1.5], "integer class ids"),
    ],
)
def test_invalid_points(coords, labels, match):
    with pytest.raises(ValueError, match=match):
        PointSet(coords, labels)


def test_bounds_error_names_points():
    ps = PointSet([[0, 0], [10, 3], [2, -1]], [0, 1, 1])
    assert ps.outside((10, 5)).tolist() == [1, 2]
    with pytest.raises(PointsOutOfBoundsError, match=r"my.csv: 2 point\(s\) outside .*#1 \(row=10") as err:
        ps.check_bounds((10, 5), source="my.csv")
    assert err.value.indices.tolist() == [1, 2]
    clipped = ps.clipped((10, 5))
    assert clipped.outside((10, 5)).size == 0
    assert clipped.coords.tolist() == [[0, 0], [9, 3], [2, 0]]


def test_subset_append_empty():
    ps = PointSet([[1, 1], [2, 2]], [3, 4])
    assert ps.subset(np.array([False, True])).labels.tolist() == [4]
    more = ps.appended([[5, 5]], [7])
    assert more.labels.tolist() == [3, 4, 7] and len(ps) == 2
    assert len(PointSet.empty()) == 0
