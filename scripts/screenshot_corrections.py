"""Screenshots of the real napari window before and after one correction, for the README.

Run under Xvfb (the viewer must be shown, otherwise the canvas is black)::

    xvfb-run -a -s "-screen 0 1280x1024x24" python scripts/screenshot_corrections.py

Opens the bundled Dubai sample, docks the SSeg widget, presses Expand and saves the window
(``docs/images/corrections_before.png``); then, as a user would, paints one brush stroke of the
right class with napari's own paint method on ``SSeg labels`` in the largest wrong region (found
with the sample's ground truth from ``../shared/data``, which only picks the spot), presses Expand
again and saves ``docs/images/corrections_after.png``. Prints how many pixels changed class and
the accuracy before and after.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GT = ROOT.parent / "shared" / "data" / "aerial_dubai" / "masks" / "tile2_image_part_005.png"


def wait_until(app, cond, timeout_s: float = 900.0) -> None:
    end = time.perf_counter() + timeout_s
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError("the SSeg worker did not finish in time")
        app.processEvents()
        time.sleep(0.01)


def settle(app, n: int = 30) -> None:
    for _ in range(n):
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--size", type=int, nargs=2, default=(1240, 780), metavar=("W", "H"))
    parser.add_argument("--radius", type=int, default=12, help="brush radius in pixels")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_sseg.core.corrections import oracle_disc
    from napari_sseg.io import read_label_image

    gt = read_label_image(GT)
    viewer = napari.Viewer(show=True, title="napari-sseg")
    viewer.window.resize(*args.size)
    viewer.open_sample("napari-sseg", "dubai")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sseg", "SSeg")
    app = QApplication.instance()
    settle(app)
    widget.expand_btn.click()
    wait_until(app, lambda: not widget.is_busy())
    labels = widget.output_layer()
    before = np.array(labels.data)
    valid = gt != 255
    disc = oracle_disc(before, gt, radius=args.radius)
    print(f"largest wrong region: {disc.region_size} px, true class {disc.label} at {disc.center}")
    viewer.layers.selection = {labels}
    labels.mode = "paint"
    labels.selected_label = disc.label
    viewer.reset_view()
    settle(app)
    args.out.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out / "corrections_before.png"), canvas_only=False, flash=False)

    labels.brush_size = 2 * args.radius
    labels.paint(disc.center, disc.label)  # one dab of napari's brush, as a click would
    settle(app)
    widget.expand_btn.click()
    wait_until(app, lambda: not widget.is_busy())
    after = np.array(labels.data)
    viewer.layers.selection = {labels}
    settle(app)
    viewer.screenshot(str(args.out / "corrections_after.png"), canvas_only=False, flash=False)
    corr = widget.panels["Corrections"].corrections_layer().data
    print(f"painted {(corr != 255).sum()} px; {(after != before).sum()} px changed class; "
          f"accuracy {100 * (before[valid] == gt[valid]).mean():.1f} % -> "
          f"{100 * (after[valid] == gt[valid]).mean():.1f} %")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
