"""The dock widget on stacks: every plane labelled from points on some planes (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sseg.core.points import PointSet
from napari_sseg.core.volume import expand_volume

pytestmark = pytest.mark.gui
WAIT_MS = 120_000


def stack(n_planes=4, shape=(48, 64)):
    """Dark left / bright right, the boundary moving right by 2 columns per plane."""
    rng = np.random.default_rng(0)
    cc = np.arange(shape[1])[None, :]
    out = np.empty((n_planes, *shape), np.uint8)
    for z in range(n_planes):
        img = np.where(cc < 24 + 2 * z, 40.0, 200.0) + rng.normal(0, 5, shape)
        out[z] = np.clip(img, 0, 255)
    return out


def add_classes(viewer, a, b):
    viewer.add_points(a, name="a", metadata={"sseg_class_id": 1})
    viewer.add_points(b, name="b", metadata={"sseg_class_id": 2})


def run(qtbot, widget, button):
    from qtpy.QtCore import Qt

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)


def test_points_on_one_plane_label_all_planes_with_the_layer_scale(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    vol = stack()
    viewer.add_image(vol, name="stack", scale=(3.0, 1.0, 1.0))
    a = [[1, 10, 5], [1, 30, 10], [1, 40, 20]]
    b = [[1, 10, 60], [1, 30, 50], [1, 45, 40]]
    add_classes(viewer, [[3 * z, r, c] for z, r, c in a], [[3 * z, r, c] for z, r, c in b])
    assert widget.all_planes_check.isChecked()  # the default on stacks
    statuses = []
    orig = widget._set_status
    widget._set_status = lambda text: (statuses.append(text), orig(text))
    run(qtbot, widget, widget.expand_btn)
    out = widget.output_layer()
    assert out.data.shape == vol.shape and (out.data != 255).all()  # every plane labelled
    np.testing.assert_array_equal(out.scale, (3.0, 1.0, 1.0))
    ps = PointSet([p[1:] for p in a + b], [1] * 3 + [2] * 3, planes=[1] * 6)
    expected = expand_volume(vol, ps, spacing=(3.0, 1.0, 1.0)).labels
    np.testing.assert_array_equal(out.data, expected)
    assert any("plane 4/4" in s for s in statuses)  # progress counts planes
    assert "labelled 4 plane(s)" in widget.status.text()


def test_unchecked_keeps_planes_with_points_mode(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(stack(), name="stack")
    add_classes(viewer, [[2, 10, 5], [2, 40, 10]], [[2, 10, 60], [2, 40, 55]])
    widget.all_planes_check.setChecked(False)
    run(qtbot, widget, widget.expand_btn)
    out = widget.output_layer().data
    assert (out[[0, 1, 3]] == 255).all() and (out[2] != 255).all()


def test_time_series_of_volumes_labels_the_volumes_with_points(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    vol = stack(3)
    tz = np.stack([vol, vol[:, :, ::-1]])  # (t, z, rows, cols)
    viewer.add_image(tz, name="tz")
    add_classes(viewer, [[1, 0, 10, 60], [1, 2, 40, 55]], [[1, 0, 10, 5], [1, 1, 40, 8]])
    run(qtbot, widget, widget.expand_btn)
    out = widget.output_layer().data
    assert out.shape == tz.shape
    assert (out[0] == 255).all()  # no point at t = 0
    assert (out[1] != 255).all()
    assert out[1, 2, 20, 60] == 1 and out[1, 2, 20, 2] == 2  # t = 1 is mirrored


def test_cancel_mid_volume_keeps_previous_labels(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(stack(40, (96, 96)), name="big")
    add_classes(viewer, [[0, 10, 5], [20, 40, 10]], [[0, 10, 90], [20, 40, 85]])
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.expand_btn, Qt.MouseButton.LeftButton)
    # any plane of the first pass (one plane shows for milliseconds: waiting for a given one
    # missed it under load)
    qtbot.waitUntil(lambda: "superpixels: plane" in widget.status.text(), timeout=WAIT_MS)
    qtbot.mouseClick(widget.cancel_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    assert widget.output_layer() is None  # nothing half-written
    assert "cancel" in widget.status.text()


def test_suggestions_propose_a_plane_and_positions(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    vol = stack(5)
    viewer.add_image(vol, name="stack")
    add_classes(viewer, [[0, 10, 5], [0, 40, 10], [0, 25, 12]], [[0, 10, 60], [0, 40, 55],
                                                                  [0, 25, 50]])
    run(qtbot, widget, widget.expand_btn)
    conf = widget._last[2].confidence
    widget.n_suggest.setValue(3)
    run(qtbot, widget, widget.suggest_btn)
    sugg = viewer.layers["suggestions"].data
    plane = int(np.argmin(conf.reshape(5, -1).mean(axis=1)))
    assert sugg.shape == (3, 3) and (sugg[:, 0] == plane).all()
    assert viewer.dims.current_step[0] == plane  # the viewer shows the proposed plane
    assert f"plane {plane}" in widget.status.text()


def test_the_stack_option_is_shown_only_for_images_with_planes(viewer_widget):
    viewer, widget = viewer_widget
    viewer.add_image(stack()[0], name="flat")
    assert widget.image_layer().name == "flat"
    assert widget.all_planes_check.isHidden()
    viewer.add_image(stack(), name="volume")
    widget.image_combo.setCurrentText("volume")
    assert not widget.all_planes_check.isHidden()
    widget.image_combo.setCurrentText("flat")
    assert widget.all_planes_check.isHidden()
