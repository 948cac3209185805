"""Fixtures for the napari plugin tests.

GUI tests (marked ``gui``) need a display: pytest-xvfb starts Xvfb when it is installed, or run
pytest under ``xvfb-run``. Without a display they are skipped, never failed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
WAIT_MS = 120_000


def _has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _gui_skip_reason() -> str | None:
    if not _has_display():
        return "no display: install pytest-xvfb or run under xvfb-run"
    for mod in ("napari", "qtpy", "pytestqt"):
        try:
            __import__(mod)
        except Exception as exc:  # noqa: BLE001 - any import failure means: no GUI tests
            return f"{mod} not importable: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    checked = False
    for item in items:
        if "gui" in item.keywords and str(item.fspath).startswith(str(Path(__file__).parent)):
            if not checked:
                reason, checked = _gui_skip_reason(), True
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def viewer_widget(make_napari_viewer_proxy, qtbot):
    """A napari viewer (proxy: the worker may not touch layers) and the SSeg widget; a worker
    still running at the end is cancelled and waited for."""
    from napari_sseg._widget import SSegWidget

    viewer = make_napari_viewer_proxy()
    widget = SSegWidget(viewer)
    qtbot.addWidget(widget)
    yield viewer, widget
    if widget.is_busy():
        widget.cancel()
        qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)


@pytest.fixture
def sample_layers():
    from napari_sseg._sample_data import make_sample_data

    return make_sample_data()


@pytest.fixture
def ground_truth():
    path = DATA / "aerial_dubai" / "masks" / "tile2_image_part_005.png"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    from napari_sseg.io import read_label_image

    return read_label_image(path)


@pytest.fixture
def notifications():
    """Messages of napari notifications shown during the test (errors and warnings)."""
    from napari.utils.notifications import notification_manager

    seen: list = []

    def grab(event):
        seen.append(event)

    notification_manager.notification_ready.connect(grab)
    yield seen
    notification_manager.notification_ready.disconnect(grab)


@pytest.fixture
def two_regions():
    """Factory of a small synthetic grey image with a dark left and a bright right half."""
    return two_region_image


def two_region_image(shape=(64, 80)) -> np.ndarray:
    """Grey image: left half dark, right half bright, with mild seeded noise."""
    rng = np.random.default_rng(0)
    img = np.full(shape, 40.0)
    img[:, shape[1] // 2:] = 200.0
    img += rng.normal(0, 5, shape)
    return np.clip(img, 0, 255).astype(np.uint8)
