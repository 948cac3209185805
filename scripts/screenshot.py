"""Screenshot of the real napari window with the SSeg widget and a result, for the README.

Run under Xvfb (the viewer must be shown, otherwise the canvas is black)::

    xvfb-run -a -s "-screen 0 1280x1024x24" python scripts/screenshot.py

Opens the bundled sample (File > Open Sample > napari-sseg), docks the SSeg widget from the
plugin manifest, presses Expand, waits for the worker, proposes a few suggestions and saves the
whole window to ``docs/images/screenshot.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait_until(app, cond, timeout_s: float = 600.0) -> None:
    end = time.perf_counter() + timeout_s
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError("the SSeg worker did not finish in time")
        app.processEvents()
        time.sleep(0.01)


def save_window(viewer, app, out: Path) -> None:
    """Fit the view, let the window settle, and save the whole window (widgets included)."""
    viewer.reset_view()
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "screenshot.png")
    parser.add_argument("--size", type=int, nargs=2, default=(1240, 780), metavar=("W", "H"))
    parser.add_argument("--suggest", type=int, default=5, help="suggestions to show (0: none)")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True, title="napari-sseg")
    viewer.window.resize(*args.size)
    viewer.open_sample("napari-sseg", "dubai")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sseg", "SSeg")
    app = QApplication.instance()
    app.processEvents()

    widget.expand_btn.click()
    wait_until(app, lambda: not widget.is_busy())
    if args.suggest:
        widget.n_suggest.setValue(args.suggest)
        widget.suggest_btn.click()
        wait_until(app, lambda: not widget.is_busy())
    labels = widget.output_layer()
    if labels is None:
        raise RuntimeError(f"no labels were produced: {widget.status.text()}")
    viewer.layers.selection = {labels}
    save_window(viewer, app, args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
