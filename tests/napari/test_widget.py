"""The SSeg dock widget driven through its buttons in a real napari viewer (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sseg.core.pipeline import iter_expand_image
from napari_sseg.core.points import PointSet
from napari_sseg.core.progress import run_generator

pytestmark = pytest.mark.gui
WAIT_MS = 120_000


def click(qtbot, button):
    from qtpy.QtCore import Qt

    assert button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def expand_and_wait(qtbot, widget):
    click(qtbot, widget.expand_btn)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)


def sample_points_set():
    from napari_sseg._sample_data import SAMPLE_POINTS
    from napari_sseg.io import read_points_file

    return read_points_file(SAMPLE_POINTS).points["dubai_tile2_part005.jpg"]


def test_open_sample_and_expand(viewer_widget, qtbot, ground_truth):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-sseg", "dubai")  # through the npe2 manifest
    assert widget.image_combo.currentText() == "Dubai aerial (CC0)"
    assert [lay.name for lay in viewer.layers][1:] == [
        "Building", "Land (unpaved)", "Road", "Vegetation", "Water"
    ]
    expand_and_wait(qtbot, widget)

    out = widget.output_layer()
    assert out is not None and out.name == "SSeg labels"
    image = viewer.layers["Dubai aerial (CC0)"]
    assert out.data.dtype == np.uint8
    assert out.data.shape == (544, 510)
    np.testing.assert_array_equal(out.scale, image.scale)
    np.testing.assert_array_equal(out.translate, image.translate)
    # the widget gives exactly what the core gives on the same image and points, taken in the
    # widget's order (class layer by class layer): the cross-validation folds of the expansion
    # are drawn over the points in the order given
    pts = sample_points_set()
    order = np.argsort(pts.labels, kind="stable")
    pts = PointSet(pts.coords[order], pts.labels[order])
    expected = run_generator(iter_expand_image(np.asarray(image.data), pts)).labels
    np.testing.assert_array_equal(out.data, expected)
    assert set(np.unique(out.data)) == {0, 1, 2, 3, 4}
    rows, cols = pts.pixel_indices()
    np.testing.assert_array_equal(out.data[rows, cols], pts.labels)
    # and it is a real segmentation of the tile, not noise
    valid = ground_truth != 255
    # majority class (Land) alone scores 0.32 on this tile
    assert (out.data[valid] == ground_truth[valid]).mean() > 0.45
    # the output colours are the class colours
    for lay in viewer.layers[1:6]:
        cid = lay.metadata["sseg_class_id"]
        np.testing.assert_allclose(out.colormap.map(cid)[:3], lay.face_color[0][:3], atol=1e-6)

    # a second Expand updates the same layer (undoably) instead of adding one
    viewer.layers["Road"].add([[300.0, 20.0]])
    expand_and_wait(qtbot, widget)
    assert [lay.name for lay in viewer.layers].count("SSeg labels") == 1
    assert widget.output_layer() is out
    assert out.data[300, 20] == 2
    out.undo()
    np.testing.assert_array_equal(out.data, expected)


def test_scale_and_translate_are_honoured(viewer_widget, qtbot, two_regions):
    viewer, widget = viewer_widget
    img = two_regions()
    image = viewer.add_image(img, name="img", scale=(2.0, 0.5), translate=(100.0, -20.0))
    # class layers without any transform: their data are world coordinates
    pix = {1: [[10.0, 10.0], [50.0, 20.0]], 2: [[30.0, 70.0]]}
    for cid, rc in pix.items():
        world = np.asarray(rc) * [2.0, 0.5] + [100.0, -20.0]
        viewer.add_points(world, name=f"c{cid}", metadata={"sseg_class_id": cid,
                                                            "sseg_class_name": f"c{cid}"})
    widget.image_combo.setCurrentText("img")
    expand_and_wait(qtbot, widget)
    out = widget.output_layer()
    np.testing.assert_array_equal(out.scale, image.scale)
    np.testing.assert_array_equal(out.translate, image.translate)
    ps = PointSet([*pix[1], *pix[2]], [1, 1, 2])
    expected = run_generator(iter_expand_image(img, ps)).labels
    np.testing.assert_array_equal(out.data, expected)
    assert (out.data[:, :35] == 1).mean() > 0.95 and (out.data[:, 45:] == 2).mean() > 0.95


def test_cancel_keeps_previous_labels(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-sseg", "dubai")
    expand_and_wait(qtbot, widget)
    before = widget.output_layer().data.copy()
    viewer.layers["Water"].add([[20.0, 480.0], [40.0, 470.0]])

    click(qtbot, widget.expand_btn)
    worker = widget._worker
    worker.yielded.connect(lambda _: widget.cancel())  # cancel at the first progress step
    with qtbot.waitSignal(worker.aborted, timeout=WAIT_MS):
        pass
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    np.testing.assert_array_equal(widget.output_layer().data, before)
    assert "cancelled" in widget.status.text()
    assert [lay.name for lay in viewer.layers].count("SSeg labels") == 1


def test_bad_input_shows_notification(viewer_widget, qtbot, notifications, two_regions):
    viewer, widget = viewer_widget
    # no classes at all
    viewer.add_image(two_regions(), name="img")
    click(qtbot, widget.expand_btn)
    assert not widget.is_busy()
    assert any("no class layers" in str(n.message) for n in notifications)
    # a point outside the image, named by its layer
    widget.class_name_edit.setText("sky")
    click(qtbot, widget.add_class_btn)
    viewer.layers["sky"].add([[5.0, 5.0], [500.0, 5.0]])
    click(qtbot, widget.expand_btn)
    assert not widget.is_busy()
    msg = [str(n.message) for n in notifications][-1]
    assert "'sky'" in msg and "outside image 'img'" in msg
    assert widget.output_layer() is None


def test_add_class_gets_own_colour_and_id(viewer_widget, qtbot, two_regions):
    viewer, widget = viewer_widget
    viewer.add_image(two_regions(), name="img", scale=(3.0, 3.0))
    for name in ("dark", "bright"):
        widget.class_name_edit.setText(name)
        click(qtbot, widget.add_class_btn)
    dark, bright = viewer.layers["dark"], viewer.layers["bright"]
    assert dark.metadata["sseg_class_id"] == 1 and bright.metadata["sseg_class_id"] == 2
    assert dark.metadata["sseg_class_colour"] != bright.metadata["sseg_class_colour"]
    np.testing.assert_array_equal(dark.scale, (3.0, 3.0))
    dark.add([[10.0, 10.0]])
    bright.add([[10.0, 70.0]])
    from napari.utils.colormaps.standardize_color import transform_color

    for lay in (dark, bright):
        np.testing.assert_allclose(
            lay.face_color[0], transform_color(lay.metadata["sseg_class_colour"])[0], atol=1e-6
        )
    assert not np.allclose(dark.face_color[0], bright.face_color[0])
    expand_and_wait(qtbot, widget)
    out = widget.output_layer()
    assert out.data[10, 10] == 1 and out.data[10, 70] == 2
    np.testing.assert_array_equal(out.scale, (3.0, 3.0))


def test_z_stack_expands_planes_with_points(viewer_widget, qtbot, two_regions):
    viewer, widget = viewer_widget
    plane = two_regions()
    stack = np.stack([plane, plane[:, ::-1], plane])
    viewer.add_image(stack, name="stack")
    viewer.add_points([[1, 10, 10]], name="a", metadata={"sseg_class_id": 1})
    viewer.add_points([[1, 10, 70]], name="b", metadata={"sseg_class_id": 2})
    widget.all_planes_check.setChecked(False)  # the planes-with-points mode
    expand_and_wait(qtbot, widget)
    out = widget.output_layer().data
    assert out.shape == stack.shape and out.dtype == np.uint8
    assert (out[0] == 255).all() and (out[2] == 255).all()  # planes without points untouched
    ps = PointSet([[10, 10], [10, 70]], [1, 2])
    np.testing.assert_array_equal(out[1], run_generator(iter_expand_image(stack[1], ps)).labels)


def test_suggest_and_assign(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-sseg", "dubai")
    widget.n_suggest.setValue(4)
    widget.map_check.setChecked(True)
    click(qtbot, widget.suggest_btn)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    sugg = viewer.layers["suggestions"]
    assert sugg.data.shape == (4, 2)
    assert ((sugg.data >= 0) & (sugg.data < [544, 510])).all()
    acq = viewer.layers["SSeg acquisition"]
    assert acq.data.shape == (544, 510)

    road = viewer.layers["Road"]
    n_road = len(road.data)
    chosen = sugg.data[[0, 2]].copy()
    sugg.selected_data = {0, 2}
    widget.assign_combo.setCurrentText("Road")
    click(qtbot, widget.assign_btn)
    assert len(road.data) == n_road + 2
    np.testing.assert_allclose(road.data[-2:], chosen)
    assert len(sugg.data) == 2


def test_first_suggestions_need_no_points(viewer_widget, qtbot, two_regions):
    viewer, widget = viewer_widget
    viewer.add_image(two_regions((64, 80)), name="fresh")
    widget.n_suggest.setValue(6)
    click(qtbot, widget.suggest_btn)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    sugg = viewer.layers["suggestions"].data
    assert sugg.shape == (6, 2)
    assert ((sugg >= 0) & (sugg < [64, 80])).all()
    # exploration covers both halves of the image
    assert (sugg[:, 1] < 40).any() and (sugg[:, 1] >= 40).any()


def test_live_mode_reexpands_after_points_change(viewer_widget, qtbot, two_regions):
    viewer, widget = viewer_widget
    viewer.add_image(two_regions(), name="img")
    viewer.add_points([[10, 10]], name="a", metadata={"sseg_class_id": 1})
    viewer.add_points([[10, 70]], name="b", metadata={"sseg_class_id": 2})
    widget.live_check.setChecked(True)
    expand_and_wait(qtbot, widget)
    assert widget.output_layer().data[60, 30] == 1
    # a "b" point inside the dark half: after the debounce the labels follow without a click
    viewer.layers["b"].add([[60.0, 30.0]])
    qtbot.waitUntil(lambda: widget.output_layer().data[60, 30] == 2, timeout=WAIT_MS)


def test_sam2_choice_disabled_without_checkpoint(viewer_widget, monkeypatch):
    from napari_sseg import backends

    _, widget = viewer_widget
    model = widget.backend_combo.model()
    for row in range(widget.backend_combo.count()):
        backend, name = widget.backend_combo.itemData(row)
        item = model.item(row)
        if backend == "sam2":
            has = getattr(backends, "find_checkpoint", lambda m: None)(name) is not None
            assert item.isEnabled() == has
            if not has:
                assert "checkpoint" in item.toolTip()
        else:
            assert item.isEnabled()


def test_viewer_opens_and_saves_through_the_plugin(make_napari_viewer_proxy, tmp_path):
    from napari_sseg._sample_data import SAMPLE_POINTS

    viewer = make_napari_viewer_proxy()
    opened = viewer.open(str(SAMPLE_POINTS), plugin="napari-sseg")
    assert [lay.metadata["sseg_class_id"] for lay in opened] == [0, 1, 2, 3, 4]
    written = viewer.layers.save(str(tmp_path / "points.csv"), selected=False, plugin="napari-sseg")
    assert str(tmp_path / "points.csv") in written
    again = viewer.open(str(tmp_path / "points.csv"), plugin="napari-sseg")
    for a, b in zip(opened, again):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.metadata["sseg_class_name"] == b.metadata["sseg_class_name"]

    viewer.layers.clear()
    labels = np.zeros((20, 30), np.uint8)
    labels[5:10, 5:25] = 3
    viewer.add_labels(labels, name="pred")
    viewer.layers.save(str(tmp_path / "pred_mask.tif"), selected=False, plugin="napari-sseg")
    (back,) = viewer.open(str(tmp_path / "pred_mask.tif"), plugin="napari-sseg")
    assert back.__class__.__name__ == "Labels"
    np.testing.assert_array_equal(back.data, labels)


def test_worker_error_is_a_notification_and_keeps_labels(viewer_widget, qtbot, notifications,
                                                         monkeypatch, tmp_path):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-sseg", "dubai")
    expand_and_wait(qtbot, widget)
    before = widget.output_layer().data.copy()
    # SAM2 chosen while its checkpoint is gone: the worker fails to load the model
    monkeypatch.setenv("NAPARI_SSEG_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    combo = widget.backend_combo
    combo.setCurrentIndex(next(i for i in range(combo.count()) if combo.itemData(i)[0] == "sam2"))
    viewer.layers["Water"].add([[20.0, 480.0]])
    n_before = len(notifications)
    click(qtbot, widget.expand_btn)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    np.testing.assert_array_equal(widget.output_layer().data, before)
    new = [n for n in notifications[n_before:]]
    assert len(new) == 1 and "error" in str(new[0].severity).lower()
    assert str(new[0].message).startswith("SSeg failed:")
    assert "sam2.1_hiera_tiny.pt" in str(new[0].message)
    assert widget.status.text().startswith("SSeg failed:") and "checkpoint" in widget.status.text()


def test_extra_channel_layers(viewer_widget, qtbot, two_regions):
    viewer, widget = viewer_widget
    a = two_regions()
    b = np.ascontiguousarray(a[::-1])  # a second channel that differs from the first
    viewer.add_image(a, name="ch0")
    viewer.add_image(b, name="ch1")
    viewer.add_points([[10, 10]], name="p", metadata={"sseg_class_id": 1})
    viewer.add_points([[50, 70]], name="q", metadata={"sseg_class_id": 2})
    widget.image_combo.setCurrentText("ch0")
    widget.channels_check.setChecked(True)
    expand_and_wait(qtbot, widget)
    ps = PointSet([[10, 10], [50, 70]], [1, 2])
    both = np.stack([a, b], axis=2)
    np.testing.assert_array_equal(
        widget.output_layer().data, run_generator(iter_expand_image(both, ps)).labels
    )
