"""How responsive napari stays while the SSeg widget expands.

Opens a real napari window (run under Xvfb: ``xvfb-run -a -s "-screen 0 1280x1024x24" python
benchmarks/bench_widget_responsiveness.py``), loads an image with class points, presses the
widget's Expand button and records, while the worker runs:

* the longest stall of the Qt event loop: a 5 ms QTimer stamps every tick; the longest gap
  between two ticks minus the period is the longest time the window could not react;
* the time from the click to the labels being shown (the worker finished and the result applied).

Cases: the bundled sample (544 x 510), a 4x upscaled sample (2176 x 2040), and the first run
(output layer created) against later runs (layer updated in place, undoably). Writes
``benchmarks/results/widget_responsiveness.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

TICK_MS = 5
RESULTS = Path(__file__).resolve().parent / "results" / "widget_responsiveness.md"


def measure_once(app, widget, timeout_s: float = 600.0) -> dict:
    from qtpy.QtCore import QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    for _ in range(5):  # settle
        app.processEvents()
        time.sleep(0.01)
    ticks.clear()
    t0 = time.perf_counter()
    widget.expand_btn.click()
    t_click_return = time.perf_counter()
    while widget.is_busy() and time.perf_counter() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.001)
    t_done = time.perf_counter()
    # let the canvas draw the new labels and keep stamping for a moment
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    stamps = [t0] + [t for t in ticks if t >= t0]
    gaps = np.diff(stamps) * 1000 if len(stamps) > 1 else np.array([0.0])
    return {
        "click_to_labels_s": t_done - t0,
        "click_handler_ms": (t_click_return - t0) * 1000,
        "longest_stall_ms": float(max(0.0, gaps.max() - TICK_MS)),
        "ticks": len(stamps) - 1,
        "status": widget.status.text(),
    }


def run_case(viewer, widget, app, image, points_layers, name: str, repeats: int) -> list[dict]:
    viewer.layers.clear()
    viewer.add_image(image, name=name, rgb=image.ndim == 3)
    for data, meta, _ in points_layers:
        viewer.add_points(data, **meta)
    widget.image_combo.setCurrentText(name)
    rows = []
    for i in range(repeats):
        if i:  # move one point so later runs really change the labels
            lay = viewer.layers[1]
            lay.data = lay.data + 1.0
        r = measure_once(app, widget)
        r["case"] = name
        r["run"] = "first (layer created)" if i == 0 else "update (in place, undoable)"
        rows.append(r)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_sseg._sample_data import make_sample_data
    from napari_sseg._widget import SSegWidget

    layers = make_sample_data()
    image = layers[0][0]
    points = layers[1:]
    big = np.repeat(np.repeat(image, 4, axis=0), 4, axis=1)
    big_points = [(d * 4 + 1.5, dict(m), t) for d, m, t in points]
    for _, m, _ in big_points:
        m["size"] = m.get("size", 10) * 4

    load_before = os.getloadavg()[0]
    viewer = napari.Viewer(show=True)
    widget = SSegWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SSeg")
    app = QApplication.instance()
    rows = []
    rows += run_case(viewer, widget, app, image, points, "sample 544x510", args.repeats)
    rows += run_case(viewer, widget, app, big, big_points, "sample x4 2176x2040", args.repeats)
    viewer.close()

    lines = [
        "# Widget responsiveness during an expansion",
        "",
        f"Written by `benchmarks/bench_widget_responsiveness.py` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"({platform.machine()}, {platform.python_version()}, Xvfb + Mesa software OpenGL, "
        "2 shared cores, superpixel backend).",
        "",
        f"A {TICK_MS} ms QTimer stamps the Qt event loop from the click on Expand until the labels "
        "are shown; *longest stall* is the longest gap between two stamps minus the period (target "
        "< 100 ms). *Click handler* is the time the click itself blocks (snapshot of the inputs and "
        "starting the worker).",
        "",
        "| image | run | click to labels (s) | longest stall (ms) | click handler (ms) | ticks |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['run']} | {r['click_to_labels_s']:.2f} | "
            f"{r['longest_stall_ms']:.0f} | {r['click_handler_ms']:.1f} | {r['ticks']} |"
        )
    for case in dict.fromkeys(r["case"] for r in rows):
        sel = [r for r in rows if r["case"] == case]
        lines.append("")
        lines.append(
            f"- {case}: median click-to-labels {statistics.median(r['click_to_labels_s'] for r in sel):.2f} s, "
            f"worst stall {max(r['longest_stall_ms'] for r in sel):.0f} ms."
        )
    lines += [
        "",
        f"Machine load while measuring (1-min load average on {os.cpu_count()} cores): "
        f"before {load_before:.1f}, after {os.getloadavg()[0]:.1f}. Other jobs share these cores, "
        "so stalls include time the OS did not schedule the GUI thread at all.",
        "",
        "Where the stalls come from (instrumented runs): all expansion work runs in the thread "
        "worker; the main thread only snapshots inputs (tens of ms), updates the progress bars and "
        "applies the result. The first run of a session pays napari's one-time creation of the "
        "Labels layer and its OpenGL visual (about 0.5-1 s with Mesa's software OpenGL under Xvfb); "
        "later runs update that layer in place (`data_setitem`, undoable) in 10-90 ms. The other "
        "gaps of about 100 ms fall inside the worker's long compiled calls (SLIC, image filters), "
        "when the GUI thread waits for the GIL or a CPU.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))  # noqa: T201 - a benchmark script, not the package
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
