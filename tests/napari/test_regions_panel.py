"""The *Regions* section: build in a worker, slider cuts, region brush, local steps (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sseg.core.regions import cut, cut_nodes, n_regions_at_level, region_hierarchy

pytestmark = pytest.mark.gui
WAIT_MS = 120_000


def blocks_image(shape=(90, 120)) -> np.ndarray:
    """RGB image of six coloured blocks with seeded noise."""
    rng = np.random.default_rng(1)
    m, n = shape
    ids = (np.arange(m)[:, None] * 2 // m) * 3 + (np.arange(n)[None, :] * 3 // n)
    colours = np.array([[200, 40, 40], [40, 180, 40], [40, 40, 200],
                        [220, 220, 60], [60, 200, 220], [120, 120, 120]], float)
    img = colours[ids] + rng.normal(0, 6, shape + (3,))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def panel(make_napari_viewer_proxy, qtbot):
    from napari_sseg._widget import SSegWidget

    viewer = make_napari_viewer_proxy()
    img = blocks_image()
    viewer.add_image(img, name="blocks", rgb=True, scale=(2.0, 2.0), translate=(10.0, -4.0))
    widget = SSegWidget(viewer)
    qtbot.addWidget(widget)
    panel = widget.panels["Regions"]
    panel.build_btn.click()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    assert panel.hierarchy is not None
    yield viewer, widget, panel, img


def test_build_in_worker_and_slider_draws_the_cut(panel):
    viewer, widget, panel, img = panel
    h = panel.hierarchy
    # the worker built exactly what the core builds on the same pixels
    np.testing.assert_array_equal(h.parents, region_hierarchy(img).parents)
    layer = viewer.layers["SSeg regions"]
    np.testing.assert_array_equal(layer.scale, (2.0, 2.0))
    np.testing.assert_array_equal(layer.translate, (10.0, -4.0))
    for value in (100, 600, 900):
        panel.slider.setValue(value)
        panel.show_level()  # what the debounce timer calls
        k = max(2, n_regions_at_level(h, value / 1000))
        expected = cut(h, n_regions=k)
        np.testing.assert_array_equal(panel._labels, expected)
        # boundaries: pixels whose right or lower neighbour is another region
        edges = np.zeros(expected.shape, bool)
        edges[:, :-1] |= expected[:, :-1] != expected[:, 1:]
        edges[:-1, :] |= expected[:-1, :] != expected[1:, :]
        np.testing.assert_array_equal(layer.data, edges.astype(np.uint8))
        assert panel.count_label.text() == f"{k} regions"
    assert [lay.name for lay in viewer.layers].count("SSeg regions") == 1


def test_brush_fills_exactly_the_clicked_regions_and_undoes(panel):
    viewer, widget, panel, img = panel
    widget.class_name_edit.setText("sky")
    widget.add_class()
    panel.slider.setValue(700)
    panel.show_level()
    labels = panel._labels.copy()
    assert panel.class_combo.currentText() == "sky"
    cid = panel.class_combo.currentData()
    pix = [(10, 10), (80, 100), (12, 11)]
    panel.fill_regions(pix, cid)
    out = widget.output_layer()
    assert out is not None and out.name == "SSeg labels" and out.data.shape == img.shape[:2]
    np.testing.assert_array_equal(out.scale, (2.0, 2.0))
    chosen = np.isin(labels, [labels[r, c] for r, c in pix])
    np.testing.assert_array_equal(out.data == cid, chosen)
    assert (out.data[~chosen] == 255).all()
    # the fills are corrections: they stick in later expansions
    corrections = widget.panels["Corrections"].corrections()
    np.testing.assert_array_equal(corrections == cid, chosen)
    out.undo()  # one fill, one undo step, and the undone fill is no correction any more
    assert (out.data == 255).all()
    assert (widget.panels["Corrections"].corrections() == 255).all()


def test_brush_drag_through_the_mouse_callback(panel):
    """A press, two moves and a release on the regions layer fill the regions passed over."""
    viewer, widget, panel, img = panel
    widget.add_class()
    panel.slider.setValue(650)
    panel.show_level()
    panel.brush_btn.setChecked(True)
    layer = viewer.layers["SSeg regions"]
    assert viewer.layers.selection.active.name == "SSeg regions" and not layer.mouse_pan
    labels = panel._labels
    path = [(5, 5), (5, 60), (40, 60), (40, 60)]

    class Event:  # napari updates one event object in place over a drag
        modifiers = ()

    event = Event()

    def at(kind, rc):
        event.type = kind
        event.position = tuple(layer.data_to_world(rc))

    at("mouse_press", path[0])
    gen = panel._on_drag(layer, event)
    next(gen)
    for rc in path[1:-1]:
        at("mouse_move", rc)
        next(gen)
    at("mouse_release", path[-1])
    with pytest.raises(StopIteration):
        next(gen)
    out = widget.output_layer()
    chosen = np.isin(labels, [labels[r, c] for r, c in path[:-1]])
    np.testing.assert_array_equal(out.data == panel.class_combo.currentData(), chosen)
    out.undo()  # the whole drag is one undo step
    assert (out.data == 255).all()


def test_shift_and_alt_click_step_coarser_and_finer(panel):
    viewer, widget, panel, img = panel
    panel.slider.setValue(500)
    panel.show_level()
    h = panel.hierarchy
    before = panel._labels.copy()
    n0 = int(before.max())
    panel.step_at(30, 30, coarser=True)
    after = panel._labels
    assert int(after.max()) < n0
    region = before == before[30, 30]
    assert (after[region] == after[30, 30]).all() and (after == after[30, 30]).sum() > region.sum()
    panel.set_partition(cut_nodes(h, n0))
    panel.step_at(30, 30, coarser=False)
    assert int(panel._labels.max()) == n0 + 1
    assert np.unique(panel._labels[region]).size == 2
