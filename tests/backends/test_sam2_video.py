"""The video path: masks carried through the planes, conflicts settled, the rest filled.

A fake video predictor with known masks tests the fusion logic (and the (row, col) -> (x, y)
flip); the real SAM2.1 tiny video predictor with random weights tests the integration.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sseg.backends.sam2_video import SAM2VideoProposer
from napari_sseg.core.points import PointSet
from napari_sseg.core.progress import run_generator
from napari_sseg.core.volume import iter_hybrid_expand_volume


def blobs(n_planes=4, size=48):
    """Class 1 background, two class-2 discs drifting down (region ids differ per disc)."""
    rr, cc = np.mgrid[0:size, 0:size]
    gt = np.ones((n_planes, size, size), np.int64)
    for z in range(n_planes):
        gt[z][(rr - 12 - 2 * z) ** 2 + (cc - 12) ** 2 < 49] = 2
        gt[z][(rr - 30) ** 2 + (cc - 34 - z) ** 2 < 64] = 2
    vol = np.where(gt == 2, 180, 60).astype(np.uint8)
    return vol, gt


class FakeVideoPredictor:
    """SAM2VideoPredictor's calls, returning the connected region of ``truth`` that holds each
    clicked (x, y) on the clicked frame, carried unchanged (as that region's label) to every
    frame; ``extra`` adds a mask of another object on some frames (a conflict)."""

    image_size = 64

    def __init__(self, truth, extra=None):
        self.truth = truth
        self.extra = extra or {}
        self.states = []

    def init_state(self, planes, **kw):
        state = {"planes": planes, "clicks": {}, **kw}
        self.states.append(state)
        return state

    def add_new_points_or_box(self, state, frame_idx, obj_id, points, labels):
        state["clicks"][obj_id] = (frame_idx, points[0])

    def propagate_in_video(self, state, reverse=False):
        first = min(f for f, _ in state["clicks"].values())
        n = len(state["planes"])
        frames = range(first, -1, -1) if reverse else range(first, n)
        ids = sorted(state["clicks"])
        for f in frames:
            out = np.full((len(ids), 1, *state["planes"].shape[1:3]), -10.0, np.float32)
            for k, obj in enumerate(ids):
                f0, (x, y) = state["clicks"][obj]
                t = self.truth[state["offset"] + f0]
                comp, _ = ndi.label(t == t[int(round(y)), int(round(x))])
                mask = comp == comp[int(round(y)), int(round(x))]
                out[k, 0][mask] = 10.0
                if (obj, state["offset"] + f) in self.extra:
                    out[k, 0][self.extra[(obj, state["offset"] + f)]] = 10.0
            yield f, ids, out

    def reset_state(self, state):
        state["clicks"].clear()


def fake_proposer(truth, chunk=32, extra=None):
    pred = FakeVideoPredictor(truth, extra)
    offsets = iter(range(0, len(truth), chunk))

    def init(predictor, planes, **kw):
        state = predictor.init_state(planes, **kw)
        state["offset"] = next(offsets)
        return state

    return SAM2VideoProposer(pred, chunk=chunk, init_state=init), pred


def test_masks_of_points_on_one_plane_decide_every_plane():
    vol, gt = blobs()
    # (row, col) clicks on plane 1: one in each disc, one in the background
    pts = PointSet([[14, 12], [30, 35], [45, 3]], [2, 2, 1], planes=[1, 1, 1])
    proposer, pred = fake_proposer(gt)
    res = run_generator(iter_hybrid_expand_volume(vol, pts, proposer))
    assert res.labels.shape == gt.shape
    # the fake's masks are the clicked regions of plane 1: a flipped (x, y) would click other
    # regions (row 14, col 12 as x=14, y=12 lies in the background)
    expected = np.broadcast_to(gt[1], gt.shape)
    decided = res.info["decided_fraction"]
    assert decided == 1.0
    np.testing.assert_array_equal(res.labels, expected)
    assert pred.states[0]["offload_video_to_cpu"] and pred.states[0]["offload_state_to_cpu"]


def test_conflicting_masks_are_settled_by_the_points():
    vol, gt = blobs(3)
    pts = PointSet([[14, 12], [45, 3], [40, 40]], [2, 1, 1], planes=[0, 0, 0])
    grab = np.zeros(gt.shape[1:], bool)
    grab[:, :24] = True  # the background object also claims the left half on plane 2
    proposer, _ = fake_proposer(gt, extra={(1, 2): grab})
    res = run_generator(iter_hybrid_expand_volume(vol, pts, proposer))
    # on plane 2 the disc region (class 2) is claimed by both: no point there, so the nearest
    # points of the plane-0 clicks vote, projected; the disc's own click wins its region
    disc0 = gt[0] == 2
    disc0[:, 24:] = False
    assert (res.labels[2][disc0] == 2).mean() > 0.9
    assert res.labels[0, 14, 12] == 2 and res.labels[0, 45, 3] == 1


def test_chunks_bound_the_state_and_planes_without_points_are_filled():
    vol, gt = blobs(6)
    pts = PointSet([[14, 12], [30, 35], [45, 3], [2, 40]], [2, 2, 1, 1], planes=[0, 0, 1, 1])
    proposer, pred = fake_proposer(gt, chunk=2)
    res = run_generator(iter_hybrid_expand_volume(vol, pts, proposer))
    assert len(pred.states) == 1  # chunks without points start no state
    assert all(len(s["planes"]) <= 2 for s in pred.states)
    assert 0.2 < res.info["decided_fraction"] < 0.5  # planes 0-1 decided by masks
    assert (res.labels[2:] == gt[2:]).mean() > 0.9  # the rest filled by the weight-free expansion


@pytest.mark.sam2
@pytest.mark.slow
def test_real_tiny_video_predictor_random_weights():
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from napari_sseg.backends.sam2_video import build_sam2_video_model

    torch.manual_seed(0)
    # a 256-pixel input keeps the random-weight model cheap (trained weights need 1024)
    predictor = build_sam2_video_model("tiny", device="cpu", image_size=256)
    assert predictor.image_size == 256
    vol, gt = blobs(3, 64)
    pts = PointSet([[14, 12], [45, 5]], [2, 1], planes=[1, 1])
    proposer = SAM2VideoProposer(predictor, chunk=2)
    events = []
    res = run_generator(iter_hybrid_expand_volume(vol, pts, proposer), events.append)
    assert res.labels.shape == (3, 64, 64)
    assert set(np.unique(res.labels)) <= {1, 2}
    assert res.labels[1, 14, 12] == 2 and res.labels[1, 45, 5] == 1
    assert res.info["proposer"] == "SAM2.1 video"
    assert any("propagating masks: plane 3/3" in e.message for e in events)
