"""Screenshot of the *Survey model* section in the real napari window, for the README.

Run under Xvfb (the viewer must be shown, otherwise the canvas is black)::

    xvfb-run -a -s "-screen 0 1400x1000x24" python scripts/screenshot_survey.py

Opens the bundled sample (an aerial tile with class points), docks the SSeg widget, trains a
survey model on it with the *Train* button (a small forest: one image, one minute at most),
presses *Predict* and saves the whole window to ``docs/images/survey.png``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from screenshot import ROOT, save_window, wait_until  # scripts/ is on the path when run as a script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "survey.png")
    parser.add_argument("--size", type=int, nargs=2, default=(1300, 860), metavar=("W", "H"))
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True, title="napari-sseg: survey model")
    viewer.window.resize(*args.size)
    viewer.open_sample("napari-sseg", "dubai")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sseg", "SSeg")
    app = QApplication.instance()
    app.processEvents()
    panel = widget.show_panel("Survey model")
    panel.folder_edit.setText(str(Path(tempfile.mkdtemp(prefix="sseg-shot-")) / "model"))
    panel.minutes_spin.setValue(1)
    panel.train_btn.click()
    wait_until(app, lambda: not widget.is_busy())
    panel.predict_btn.click()
    wait_until(app, lambda: not widget.is_busy())
    panel.use_check.setChecked(True)
    box = panel.parentWidget()
    scroll = box
    while scroll is not None and not hasattr(scroll, "ensureWidgetVisible"):
        scroll = scroll.parentWidget()
    if scroll is not None:
        scroll.ensureWidgetVisible(box)
    save_window(viewer, app, args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
