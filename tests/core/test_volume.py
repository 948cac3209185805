"""The weight-free volume expansion: points on some planes label every plane."""

from pathlib import Path

import numpy as np
import pytest

from napari_sseg.core.metrics import ConfusionMatrix
from napari_sseg.core.points import PointSet
from napari_sseg.core.volume import VolumeOptions, expand_volume, iter_expand_volume

EM = Path(__file__).resolve().parents[3] / "shared" / "data" / "em_isbi2012"


def _moving_disc(n_planes=6, size=64, seed=0):
    """A bright disc drifting across the planes of a noisy dark stack, and its truth."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:size, 0:size]
    vol = np.empty((n_planes, size, size), np.uint8)
    gt = np.empty((n_planes, size, size), np.int64)
    for z in range(n_planes):
        disc = (rr - 32) ** 2 + (cc - 20 - 4 * z) ** 2 < 14**2
        gt[z] = np.where(disc, 2, 1)
        vol[z] = np.clip(np.where(disc, 180, 60) + rng.normal(0, 12, disc.shape), 0, 255)
    return vol, gt


def _grid(step=8):
    g = np.arange(4, 64, step)
    return tuple(a.ravel() for a in np.meshgrid(g, g, indexing="ij"))


def test_points_on_one_plane_label_every_plane():
    vol, gt = _moving_disc()
    before = vol.copy()
    rr, cc = _grid()
    pts = PointSet(np.stack([rr, cc], 1), gt[0, rr, cc], planes=np.zeros(rr.size, int))
    res = expand_volume(vol, pts, spacing=(2.0, 1.0, 1.0))
    assert res.labels.shape == vol.shape and res.confidence.shape == vol.shape
    np.testing.assert_array_equal(vol, before)  # the caller's array is untouched
    for z in range(vol.shape[0]):
        assert (res.labels[z] == gt[z]).mean() > 0.95, z
    assert set(np.unique(res.labels)) == {1, 2}


def test_plane_range_limits_the_work_and_progress_counts_planes():
    vol, gt = _moving_disc()
    rr, cc = _grid()
    pts = PointSet(np.stack([rr, cc], 1), gt[2, rr, cc], planes=np.full(rr.size, 2))
    events = []
    gen = iter_expand_volume(vol, pts, plane_range=(2, 5))
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            res = stop.value
            break
    assert res.labels.shape == (3, 64, 64)
    assert res.info["plane_range"] == [2, 5]
    per_plane = [e for e in events if e.message.startswith(("superpixels: plane", "labelling"))]
    assert len(per_plane) == 6  # 3 planes, two passes
    assert events[-1].step == events[-1].total
    for k, z in enumerate(range(2, 5)):
        assert (res.labels[k] == gt[z]).mean() > 0.95


def test_known_voxels_are_kept_and_seed():
    vol, gt = _moving_disc(n_planes=4)
    known = np.full(vol.shape, -1, np.int64)
    known[1][gt[1] == 2] = 2  # the disc of plane 1 is decided (as a propagated mask would be)
    pts = PointSet([[60, 60], [3, 60], [60, 3]], [1, 1, 1], planes=[1, 1, 1])
    res = expand_volume(vol, pts, known=known)
    assert np.allclose(res.confidence[1][gt[1] == 2], 1.0)
    assert (res.labels[1][gt[1] == 2] == 2).all()
    assert (res.labels[3] == gt[3]).mean() > 0.9  # the known disc seeds the other planes


def test_bad_points_and_arguments_are_named():
    vol, _ = _moving_disc(n_planes=3)
    with pytest.raises(ValueError, match="no plane coordinate"):
        expand_volume(vol, PointSet([[3, 3]], [1]))
    with pytest.raises(ValueError, match=r"planes beyond the stack of 3 planes.*#1 \(plane 5\)"):
        expand_volume(vol, PointSet([[3, 3], [4, 4]], [1, 2], planes=[0, 5]))
    with pytest.raises(ValueError, match="outside the image"):
        expand_volume(vol, PointSet([[3, 300]], [1], planes=[0]))
    with pytest.raises(ValueError, match="no labelled point on planes 1..2"):
        expand_volume(vol, PointSet([[3, 3]], [1], planes=[0]), plane_range=(1, 3))
    with pytest.raises(ValueError, match="spacing"):
        expand_volume(vol, PointSet([[3, 3]], [1], planes=[0]), spacing=(0, 1, 1))
    with pytest.raises(ValueError, match="stack of shape"):
        expand_volume(vol[0], PointSet([[3, 3]], [1], planes=[0]))


def test_point_order_does_not_matter():
    vol, _ = _moving_disc(n_planes=3)
    rng = np.random.default_rng(1)
    coords = rng.uniform(0, 63, size=(12, 2))
    planes = np.array([0, 2] * 6)
    labels = np.where((coords[:, 0] - 32) ** 2 + (coords[:, 1] - 20 - 4 * planes) ** 2 < 196, 2, 1)
    a = expand_volume(vol, PointSet(coords, labels, planes=planes))
    perm = rng.permutation(12)
    b = expand_volume(vol, PointSet(coords[perm], labels[perm], planes=planes[perm]))
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.skipif(not EM.is_dir(), reason="shared EM data absent")
def test_em_planes_without_points_beat_copying_the_nearest_plane():
    """Real EM (4 consecutive slices, 256 x 256 crops): points on planes 0 and 3 only."""
    from PIL import Image

    from napari_sseg.core.expand import expand
    from napari_sseg.core.sampling import sample_points

    sl = slice(128, 384)
    vol = np.stack([np.asarray(Image.open(EM / "images" / f"{i:02d}.png").convert("L"))[sl, sl]
                    for i in range(10, 14)])
    gt = np.stack([np.asarray(Image.open(EM / "masks" / f"{i:02d}.png"))[sl, sl]
                   for i in range(10, 14)])
    rng = np.random.default_rng(0)
    per = {z: sample_points(gt[z], 20, rng=rng) for z in (0, 3)}
    pts = PointSet(np.concatenate([per[z].coords for z in per]),
                   np.concatenate([per[z].labels for z in per]),
                   planes=np.repeat([0, 3], [len(per[0]), len(per[3])]))
    res = expand_volume(vol, pts, spacing=(12.5, 1, 1), options=VolumeOptions())
    two = {z: expand(vol[z], per[z]).labels for z in per}
    ours, copy = ConfusionMatrix(), ConfusionMatrix()
    for z, near in ((1, 0), (2, 3)):
        ours.update(gt[z], res.labels[z])
        copy.update(gt[z], two[near])
    assert ours.scores()["miou"] > copy.scores()["miou"] + 0.05


def test_volume_appearance_uses_the_forest_where_only_it_separates_the_classes():
    """Planes of small dark-or-bright blocks (class 0) and mid-grey blocks (class 1), a new
    layout on every plane: neither the graph nor a linear model separates them, the trees do."""
    from napari_sseg.core.expand import ExpandOptions

    rng = np.random.default_rng(0)
    size, block = 96, 4
    nb = size // block
    vol = np.empty((4, size, size), np.uint8)
    gt = np.empty((4, size, size), np.uint8)
    for z in range(4):
        cls = rng.integers(0, 2, (nb, nb))
        level = np.where(cls == 1, 125.0, np.where(rng.random((nb, nb)) < 0.5, 35.0, 215.0))
        img = np.kron(level, np.ones((block, block))) + rng.normal(0, 6, (size, size))
        vol[z] = np.clip(img, 0, 255)
        gt[z] = np.kron(cls, np.ones((block, block), dtype=np.uint8))
    coords, labels, planes = [], [], []
    for z in (0, 2):
        rc = rng.integers(0, size, (50, 2))
        coords.append(rc)
        labels.append(gt[z, rc[:, 0], rc[:, 1]])
        planes.append(np.full(50, z))
    pts = PointSet(np.concatenate(coords), np.concatenate(labels), planes=np.concatenate(planes))

    def miou(options):
        res = expand_volume(vol, pts, options=options)
        cm = ConfusionMatrix()
        for z in (1, 3):  # the planes without points
            cm.update(gt[z], res.labels[z])
        return cm.scores()["miou"], res.info["weights"]

    with_forest, weights = miou(VolumeOptions())
    assert weights[0][1] > 0 and weights[0][2] in (2, 3)  # the best combination weighs the trees
    plain, _ = miou(VolumeOptions(expand=ExpandOptions(forest_trees=0)))
    assert with_forest > 0.8
    assert with_forest > plain + 0.1
