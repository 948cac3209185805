"""The widget with the real SAM2.1 tiny model (random weights saved as a checkpoint file).

The checkpoint is written by a subprocess so that, in this process, torch is first imported by
the widget's worker *after* napari's OpenGL canvas exists: the order that segfaults unless the
SAM2 backend keeps triton out (docs: ENVIRONMENT.md).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.sam2, pytest.mark.slow]
WAIT_MS = 600_000

if any(importlib.util.find_spec(m) is None for m in ("torch", "sam2")):
    pytest.skip("torch and sam2 are not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def random_checkpoint_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    code = (
        "import sys, torch\n"
        "torch.manual_seed(0)\n"
        "from napari_sseg.backends.sam2 import build_sam2_model\n"
        "model = build_sam2_model('tiny', device='cpu')\n"
        "torch.save({'model': model.state_dict()}, sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder / "sam2.1_hiera_tiny.pt")],
                   check=True, timeout=600)
    return folder


def test_expand_with_sam2_after_the_gl_canvas_exists(
    random_checkpoint_dir, make_napari_viewer_proxy, qtbot, monkeypatch
):
    from qtpy.QtCore import Qt

    from napari_sseg._sample_data import SAMPLE_POINTS
    from napari_sseg._widget import SSegWidget
    from napari_sseg.io import read_points_file

    monkeypatch.setenv("NAPARI_SSEG_CHECKPOINT_DIR", str(random_checkpoint_dir))
    viewer = make_napari_viewer_proxy(show=True)
    viewer.open_sample("napari-sseg", "dubai")
    widget = SSegWidget(viewer)
    qtbot.addWidget(widget)
    combo = widget.backend_combo
    row = next(i for i in range(combo.count()) if combo.itemData(i) == ("sam2", "tiny"))
    assert combo.model().item(row).isEnabled()
    combo.setCurrentIndex(row)

    qtbot.mouseClick(widget.expand_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    # torch is loaded by the worker after the GL canvas exists (unless another test of this
    # session loaded it first); getting here without a segfault is part of the check
    assert "torch" in sys.modules
    out = widget.output_layer()
    assert out is not None, widget.status.text()
    assert out.data.dtype == np.uint8 and out.data.shape == (544, 510)
    pts = read_points_file(SAMPLE_POINTS).points["dubai_tile2_part005.jpg"]
    rows, cols = pts.pixel_indices()
    assert set(np.unique(out.data)) <= {0, 1, 2, 3, 4}
    assert (out.data[rows, cols] == pts.labels).mean() == 1.0
    proposer = widget._proposer
    assert proposer is not None and "sam2.1 tiny" in proposer.name

    # a second run reuses the loaded model and the cached image embedding
    viewer.layers["Road"].add([[300.0, 20.0]])
    qtbot.mouseClick(widget.expand_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)
    assert widget._proposer is proposer
    assert proposer.embedding_source == "memory"
    assert out.data[300, 20] == 2
