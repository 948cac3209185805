"""The *Survey model* section: train from the viewer in a worker, predict a new image, use the
model in Expand, cancel, and a bad model folder (Xvfb)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui
WAIT_MS = 300_000

_spec = importlib.util.spec_from_file_location(
    "learn_built", Path(__file__).resolve().parents[1] / "learn" / "conftest.py")
_built = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_built)


def _miou(truth, labels):
    from napari_sseg.core.metrics import ConfusionMatrix

    cm = ConfusionMatrix()
    cm.update(truth, labels)
    return cm.scores()["miou"]


@pytest.fixture
def setup(make_napari_viewer_proxy, qtbot, tmp_path):
    from napari_sseg._widget import SSegWidget
    from napari_sseg.core.sampling import sample_points

    viewer = make_napari_viewer_proxy()
    img, truth = _built.built_image(0, size=96)
    viewer.add_image(img, name="train", rgb=True)
    pts = sample_points(truth, 40, rng=0)
    for cid in (1, 2, 3):
        viewer.add_points(pts.coords[pts.labels == cid], name=f"c{cid}",
                          metadata={"sseg_class_id": cid, "sseg_class_name": f"k{cid}"})
    widget = SSegWidget(viewer)
    qtbot.addWidget(widget)
    panel = widget.panels["Survey model"]
    panel.folder_edit.setText(str(tmp_path / "model"))
    return viewer, widget, panel, truth


def test_train_predict_and_expand_with_the_model(setup, qtbot, tmp_path):
    viewer, widget, panel, _ = setup
    panel.train_btn.click()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    assert panel.model is not None
    assert (tmp_path / "model" / "card.json").is_file()
    assert [int(c) for c in panel.model.classes] == [1, 2, 3]
    assert panel.model.class_names == {1: "k1", 2: "k2", 3: "k3"}
    assert "forest on 1 image(s)" in panel.info_label.text()

    # a new image without points: Predict labels it from the model alone
    img, truth = _built.built_image(7, size=96)
    viewer.add_image(img, name="new", rgb=True)
    widget._refresh_layers()
    widget.image_combo.setCurrentText("new")
    panel.predict_btn.click()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    labels = viewer.layers["SSeg labels"].data
    assert labels.shape == truth.shape
    assert _miou(truth, labels) > 0.7

    # the model as the expansion's third expert
    widget.image_combo.setCurrentText("train")
    panel.use_check.setChecked(True)
    widget.expand()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    _, _, expansion = widget._last
    assert expansion.info["prior_weights"] is not None
    assert [lay.name for lay in viewer.layers].count("SSeg labels") == 1


def test_cancelled_training_writes_no_model(setup, qtbot, tmp_path):
    viewer, widget, panel, _ = setup
    panel.train_btn.click()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    assert panel.model is None
    assert not (tmp_path / "model" / "card.json").exists()


def test_bad_model_folder_is_a_notification(setup, tmp_path):
    _, widget, panel, _ = setup
    (tmp_path / "bad").mkdir()
    assert panel.load(tmp_path / "bad") is False
    assert "card.json: missing" in widget.status.text()
    assert panel.model is None and not panel.predict_btn.isEnabled()
