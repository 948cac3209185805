"""Screenshot of the real napari window with a labelled EM stack, for the README.

Run under Xvfb (the viewer must be shown, otherwise the canvas is black)::

    xvfb-run -a -s "-screen 0 1280x1024x24" python scripts/screenshot_volume.py

Stacks ten EM slices (``../shared/data/em_isbi2012``, slices 10-19) into a volume with voxel
spacing (12.5, 1, 1) as the layer scale, puts 25 oracle points on planes 0 and 5 into two class
layers (membrane, cell), docks the SSeg widget, presses Expand (all planes, the default), and
saves the whole window, showing plane 2 (which holds no point), to
``docs/images/volume.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from screenshot import save_window, wait_until  # scripts/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
EM = ROOT.parent / "shared" / "data" / "em_isbi2012"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "volume.png")
    parser.add_argument("--size", type=int, nargs=2, default=(1240, 780), metavar=("W", "H"))
    parser.add_argument("--plane", type=int, default=2, help="plane shown")
    args = parser.parse_args()

    import napari
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from napari_sseg._classes import class_colour, class_layer_kwargs
    from napari_sseg.core.sampling import sample_points

    vol = np.stack([np.asarray(Image.open(EM / "images" / f"{i:02d}.png").convert("L"))
                    for i in range(10, 20)])
    gt = np.stack([np.asarray(Image.open(EM / "masks" / f"{i:02d}.png")) for i in range(10, 20)])
    viewer = napari.Viewer(show=True, title="napari-sseg: a labelled EM stack")
    viewer.window.resize(*args.size)
    scale = (12.5, 1.0, 1.0)
    viewer.add_image(vol, name="EM stack (slices 10-19)", scale=scale)
    rng = np.random.default_rng(0)
    coords = {0: [], 1: []}
    for z in (0, 5):
        ps = sample_points(gt[z], 25, rng=rng)
        for (r, c), lab in zip(ps.coords, ps.labels):
            coords[int(lab)].append([z * scale[0], r, c])
    for cid, name in ((1, "membrane"), (2, "cell")):
        kw = class_layer_kwargs(cid, name, class_colour(cid), size=10, ndim=3)
        layer = viewer.add_points(np.asarray(coords[cid - 1]), **kw)
        layer.out_of_slice_display = True  # points of planes 0 and 5 seen from every plane
    _, widget = viewer.window.add_plugin_dock_widget("napari-sseg", "SSeg")
    app = QApplication.instance()
    app.processEvents()
    widget.expand_btn.click()
    wait_until(app, lambda: not widget.is_busy())
    labels = widget.output_layer()
    if labels is None:
        raise RuntimeError(f"no labels were produced: {widget.status.text()}")
    viewer.dims.set_point(0, args.plane * scale[0])
    viewer.layers.selection = {labels}
    save_window(viewer, app, args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
