"""Screenshot of the *Regions* section in the real napari window, for the README.

Run under Xvfb (the viewer must be shown, otherwise the canvas is black)::

    xvfb-run -a -s "-screen 0 1400x1000x24" python scripts/screenshot_regions.py

Opens the bundled sample, docks the SSeg widget, builds the region hierarchy, moves the slider
to a middle level, fills a few regions with the region brush and saves the whole window to
``docs/images/regions.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from screenshot import ROOT, save_window, wait_until  # scripts/ is on the path when run as a script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "regions.png")
    parser.add_argument("--size", type=int, nargs=2, default=(1300, 860), metavar=("W", "H"))
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True, title="napari-sseg: regions")
    viewer.window.resize(*args.size)
    viewer.open_sample("napari-sseg", "dubai")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sseg", "SSeg")
    app = QApplication.instance()
    app.processEvents()
    panel = widget.show_panel("Regions")
    panel.build_btn.click()
    wait_until(app, lambda: not widget.is_busy())
    panel.slider.setValue(420)
    panel.show_level()
    for name, pixels in (("Road", [(250, 60), (250, 200), (250, 350), (250, 480)]),
                         ("Water", [(420, 250), (380, 300), (470, 200)]),
                         ("Building", [(60, 300), (90, 420)])):
        panel.class_combo.setCurrentText(name)
        panel.fill_regions(pixels, panel.class_combo.currentData())
    panel.brush_btn.setChecked(True)
    for layer in viewer.layers:
        if layer.name not in ("Dubai aerial (CC0)", "SSeg labels", "SSeg regions"):
            layer.visible = False
    save_window(viewer, app, args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
