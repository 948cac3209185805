"""Corrections in the dock widget: painted on 'SSeg labels', kept by every expansion (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui
WAIT_MS = 120_000
WATER = 4


def expand_and_wait(qtbot, widget):
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.expand_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)


def paint_block(layer, rows, cols, value):
    """Paint a block the way napari's tools do: one undoable edit that emits ``paint``."""
    rr, cc = np.mgrid[rows, cols]
    layer.data_setitem((rr.ravel(), cc.ravel()), value)


def panel_of(widget):
    return widget.panels["Corrections"]


def small_scene(viewer, widget, shape=(120, 160)):
    """A dark/bright grey image with one point per class (fast expansions)."""
    rng = np.random.default_rng(0)
    img = np.full(shape, 40.0)
    img[:, shape[1] // 2:] = 200.0
    img = np.clip(img + rng.normal(0, 5, shape), 0, 255).astype(np.uint8)
    viewer.add_image(img, name="img")
    for cid, rc in ((1, [[10.0, 10.0], [100.0, 30.0]]), (2, [[30.0, 140.0], [90.0, 120.0]])):
        viewer.add_points(rc, name=f"c{cid}", metadata={"sseg_class_id": cid,
                                                         "sseg_class_name": f"c{cid}"})
    widget.image_combo.setCurrentText("img")


def test_painted_block_survives_expand_and_live_and_guides_it(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-sseg", "dubai")
    expand_and_wait(qtbot, widget)
    out = widget.output_layer()
    before = out.data.copy()
    block = (slice(200, 250), slice(100, 150))
    assert (before[block] == WATER).mean() < 0.5  # a real fix, not already water
    paint_block(out, block[0], block[1], WATER)
    corr = panel_of(widget).corrections_layer()
    assert corr is not None and corr.name == "SSeg corrections"
    assert (corr.data[block] == WATER).all() and (corr.data != 255).sum() == 2500
    assert panel_of(widget).count.text() == "2500 corrected pixel(s)"

    expand_and_wait(qtbot, widget)
    assert widget.output_layer() is out
    assert (out.data[block] == WATER).all()  # 100 % of the painted pixels survive
    assert [lay.name for lay in viewer.layers].count("SSeg corrections") == 1
    # and they were evidence: the expansion differs outside the block too
    outside = np.ones(out.data.shape, bool)
    outside[block] = False
    assert (out.data[outside] != before[outside]).sum() > 100

    # Live: a new point re-expands, the block stays
    widget.live_check.setChecked(True)
    viewer.layers["Road"].add([[300.0, 20.0]])
    qtbot.waitUntil(lambda: widget.is_busy(), timeout=5_000)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    assert out.data[300, 20] == 2
    assert (out.data[block] == WATER).all()


def test_stroke_during_a_running_expansion_is_kept(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    small_scene(viewer, widget)
    expand_and_wait(qtbot, widget)
    out = widget.output_layer()
    viewer.layers["c2"].add([[60.0, 70.0]])
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.expand_btn, Qt.MouseButton.LeftButton)
    assert widget.is_busy()
    # a brush stroke with napari's own paint method while the worker runs
    out.brush_size = 9
    out.paint((40, 20), 2)
    painted = panel_of(widget).corrections_layer().data != 255
    assert painted.sum() > 30
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    assert out.data[60, 70] == 2  # the result did arrive
    assert (out.data[painted] == 2).all()


def test_undo_and_erase_hand_pixels_back(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    small_scene(viewer, widget)
    expand_and_wait(qtbot, widget)
    out = widget.output_layer()
    base = out.data.copy()
    assert (base[20:40, 20:40] == 1).all() and (base[60:80, 100:120] == 2).all()
    panel = panel_of(widget)
    paint_block(out, slice(20, 40), slice(20, 40), 2)
    paint_block(out, slice(60, 80), slice(100, 120), 1)
    corr = panel.corrections_layer()
    assert (corr.data != 255).sum() == 800
    out.undo()  # the second block goes back on both layers
    np.testing.assert_array_equal(out.data[60:80, 100:120], base[60:80, 100:120])
    assert (corr.data != 255).sum() == 400 and (corr.data[20:40, 20:40] == 2).all()
    # the eraser (background value) on part of the first block hands those pixels back
    paint_block(out, slice(20, 30), slice(20, 40), 255)
    assert (corr.data != 255).sum() == 200 and (corr.data[30:40, 20:40] == 2).all()
    expand_and_wait(qtbot, widget)
    assert (out.data[30:40, 20:40] == 2).all()
    assert (out.data[20:30, 20:40] != 255).all()  # labelled again by the expansion
    # editing the corrections layer itself is a correction too; Clear forgets them all
    paint_block(corr, slice(100, 110), slice(130, 140), 1)
    expand_and_wait(qtbot, widget)
    assert (out.data[100:110, 130:140] == 1).all()
    panel.clear()
    assert (corr.data == 255).all() and panel.count.text() == "no corrections"
    expand_and_wait(qtbot, widget)
    assert (out.data[100:110, 130:140] == 2).all()


def test_corrections_alone_expand_a_plane_without_points(viewer_widget, qtbot, notifications):
    viewer, widget = viewer_widget
    small_scene(viewer, widget)
    expand_and_wait(qtbot, widget)
    out = widget.output_layer()
    panel = panel_of(widget)
    # the painted classes are the opposite of the first result's: dark pixels are now class 2
    paint_block(out, slice(50, 60), slice(20, 30), 2)    # dark half
    paint_block(out, slice(50, 60), slice(130, 140), 1)  # bright half
    for name in ("c1", "c2"):
        viewer.layers[name].data = np.zeros((0, 2))
    expand_and_wait(qtbot, widget)
    labels = widget.output_layer().data
    assert (labels[50:60, 20:30] == 2).all() and (labels[50:60, 130:140] == 1).all()
    assert (labels[:, :70] == 2).mean() > 0.95 and (labels[:, 90:] == 1).mean() > 0.95
    # with neither points nor corrections, Expand says what is missing and changes nothing
    panel.clear()
    before = widget.output_layer().data.copy()
    expand_and_wait(qtbot, widget)
    msg = [str(n.message) for n in notifications][-1]
    assert "hold no points" in msg and "paint a correction" in msg
    np.testing.assert_array_equal(widget.output_layer().data, before)


def test_save_and_load_corrections(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    small_scene(viewer, widget)
    expand_and_wait(qtbot, widget)
    out = widget.output_layer()
    panel = panel_of(widget)
    paint_block(out, slice(50, 60), slice(60, 80), 2)
    path = panel.save(tmp_path / "dubai.png")
    from napari_sseg.io.corrections import read_corrections

    saved = read_corrections(path, out.data.shape)
    assert saved.dtype == np.uint8 and (saved != 255).sum() == 200
    panel.clear()
    panel.load(path)
    np.testing.assert_array_equal(panel.corrections_layer().data, saved)
    bad = tmp_path / "small.png"
    from napari_sseg.io import write_label_image

    write_label_image(bad, np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="small.png: corrections of 5 rows x 5 columns"):
        panel.load(bad)


class EverywhereProposer:
    """A fake SAM2: every prompt's one candidate covers the whole image."""

    name = "fake sam2"

    def set_image(self, image):
        self.shape = image.shape[:2]

    def predict(self, points_rc, negatives_rc=None):
        from napari_sseg.backends.base import Candidates

        n = len(points_rc)
        logits = np.full((n, 1) + tuple(self.shape), 8.0, np.float32)
        return Candidates(logits, np.full((n, 1), 0.9, np.float32), tuple(self.shape))


def test_sam2_path_keeps_painted_pixels(viewer_widget, qtbot, two_regions):
    viewer, widget = viewer_widget
    img = two_regions()
    viewer.add_image(img, name="img")
    viewer.add_points([[10.0, 10.0]], name="dark", metadata={"sseg_class_id": 1,
                                                            "sseg_class_name": "dark"})
    viewer.add_points([[30.0, 70.0]], name="bright", metadata={"sseg_class_id": 2,
                                                              "sseg_class_name": "bright"})
    widget.image_combo.setCurrentText("img")
    widget._proposer_factory = lambda: (("fake", None), EverywhereProposer)
    expand_and_wait(qtbot, widget)
    out = widget.output_layer()
    paint_block(out, slice(40, 50), slice(5, 15), 2)
    expand_and_wait(qtbot, widget)
    assert isinstance(widget._proposer, EverywhereProposer)
    assert (out.data[40:50, 5:15] == 2).all()
    assert widget._last[2].info["method"] == "sam2+maskslic"
