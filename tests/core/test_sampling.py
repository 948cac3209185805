import numpy as np

from napari_sseg.core.sampling import oracle_labels, sample_points


def test_random_points_avoid_ignored_pixels_and_read_the_oracle():
    gt = np.full((40, 50), 255, dtype=np.uint8)
    gt[10:30, 5:25] = 1
    gt[10:30, 25:45] = 2
    ps = sample_points(gt, 30, rng=0)
    rows, cols = ps.pixel_indices()
    assert len(ps) == 30
    assert np.all(gt[rows, cols] != 255)
    assert np.array_equal(ps.labels, gt[rows, cols])
    again = sample_points(gt, 30, rng=0)
    assert np.array_equal(again.coords, ps.coords)


def test_grid_points_spread_and_snap_to_annotated_pixels():
    gt = np.zeros((100, 100), dtype=np.uint8)
    gt[:, 50:] = 255
    ps = sample_points(gt, 16, strategy="grid", rng=1)
    rows, cols = ps.pixel_indices()
    assert np.all(gt[rows, cols] == 0)
    assert rows.max() - rows.min() > 50


def test_oracle_labels_round_coordinates():
    gt = np.arange(12).reshape(3, 4)
    assert oracle_labels(gt, [[0.4, 0.6], [2.0, 3.0]]).tolist() == [1, 11]
