"""The *Regions* section: see the image's region hierarchy at any granularity and label by region.

* *Build regions* builds the hierarchy of the chosen 2D image once, in a thread worker (the
  shared progress bar and Cancel of the dock widget); the worker gets a copy of the pixels and
  returns the hierarchy, it never touches a layer.
* The slider runs from fine (left) to coarse (right). Every move cuts the hierarchy (a few
  milliseconds on the main thread, debounced) and redraws the region boundaries in the
  ``SSeg regions`` Labels layer, which is updated in place rather than added again.
* *Region brush*: while it is on, clicking or dragging over the image fills every region the
  cursor touches with the chosen class in ``SSeg labels`` (created when missing). One drag is
  one undo step (Ctrl-Z on ``SSeg labels``), and the fill is an ordinary edit of that layer, so
  the *Corrections* section records it as a correction. Shift-click makes the region under the
  cursor one level coarser (it is merged with its neighbour in the tree), Alt-click one level
  finer (it is split in two); the keys ``.`` and ``,`` do the same at the cursor.
"""

from __future__ import annotations

import logging

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

logger = logging.getLogger(__name__)

REGIONS_NAME = "SSeg regions"
REGIONS_KEY = "sseg_regions"
SLIDER_STEPS = 1000
BOUNDARY_COLOUR = "#ffd60a"


def region_steps(image: np.ndarray):
    """Worker body: yields (fraction, message) progress and returns the region hierarchy."""
    from ..core.regions import region_hierarchy

    yield 0.05, "regions: building the hierarchy"
    hierarchy = region_hierarchy(image)
    yield 1.0, "regions: done"
    return hierarchy


class RegionsPanel(QWidget):
    """Slider over the region hierarchy and a region brush (see the module docstring)."""

    def __init__(self, host):
        super().__init__()
        self.host = host
        self.viewer = host.viewer
        self.hierarchy = None
        self._image_name = None
        self._nodes = None  # tree node of every fine region in the shown partition
        self._labels = None  # full-resolution region ids of the shown partition
        self._regions_layer = None

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.build_btn = QPushButton("Build regions")
        self.build_btn.setToolTip("Build the region hierarchy of the chosen image (once)")
        self.build_btn.clicked.connect(self.build)
        row.addWidget(self.build_btn)
        self.count_label = QLabel("no regions yet")
        row.addWidget(self.count_label, 1)
        lay.addLayout(row)

        row = QHBoxLayout()
        row.addWidget(QLabel("fine"))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setValue(SLIDER_STEPS // 4)
        self.slider.setEnabled(False)
        self.slider.setToolTip("Granularity of the regions: fine (left) to coarse (right)")
        self.slider.valueChanged.connect(lambda _v: self._slider_timer.start())
        row.addWidget(self.slider, 1)
        row.addWidget(QLabel("coarse"))
        lay.addLayout(row)

        row = QHBoxLayout()
        self.brush_btn = QPushButton("Region brush")
        self.brush_btn.setCheckable(True)
        self.brush_btn.setEnabled(False)
        self.brush_btn.setToolTip(
            "Click or drag over regions to fill them with the class in 'SSeg labels'; "
            "Shift-click: coarser here, Alt-click: finer here (keys . and ,)")
        self.brush_btn.toggled.connect(self._on_brush_toggled)
        row.addWidget(self.brush_btn)
        row.addWidget(QLabel("class"))
        self.class_combo = QComboBox()
        row.addWidget(self.class_combo, 1)
        lay.addLayout(row)

        self._slider_timer = QTimer(self)
        self._slider_timer.setSingleShot(True)
        self._slider_timer.setInterval(30)
        self._slider_timer.timeout.connect(self.show_level)
        self.viewer.layers.events.inserted.connect(self._refresh_classes)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._refresh_classes()

    # ---------------------------------------------------------------- building
    def build(self) -> None:
        """Snapshot the chosen image and build its hierarchy in a worker."""
        from napari.qt.threading import create_worker

        if self.host.is_busy():
            self.host._notify_error("SSeg is busy: wait for it or press Cancel first")
            return
        image = self.host.image_layer()
        if image is None:
            self.host._notify_error("no image: open an image to build its regions")
            return
        spatial = image.data.ndim - (1 if image.rgb else 0)
        if spatial != 2:
            self.host._notify_error(
                f"image layer {image.name!r} has {spatial} spatial axes; regions are built for "
                "2D images (grey, RGB or multichannel)")
            return
        data = np.array(image.data, copy=True)
        name = image.name
        worker = create_worker(region_steps, data, _start_thread=False,
                               _connect={"errored": self.host._on_error})
        worker.yielded.connect(self.host._on_progress)
        worker.returned.connect(lambda h, name=name: self._apply_hierarchy(name, h))
        self.host._start(worker, "building regions")

    def _apply_hierarchy(self, image_name: str, hierarchy) -> None:
        self.hierarchy = hierarchy
        self._image_name = image_name
        self.slider.setEnabled(True)
        self.brush_btn.setEnabled(True)
        self.show_level()

    # ---------------------------------------------------------------- cuts and overlay
    def level(self) -> float:
        return self.slider.value() / SLIDER_STEPS

    def show_level(self) -> None:
        """Cut the hierarchy at the slider's level and redraw the boundaries."""
        from ..core.regions import cut_nodes, n_regions_at_level

        self._slider_timer.stop()  # a redraw now supersedes one the slider scheduled
        if self.hierarchy is None:
            return
        k = max(2, n_regions_at_level(self.hierarchy, self.level()))
        self.set_partition(cut_nodes(self.hierarchy, k))

    def set_partition(self, nodes: np.ndarray) -> None:
        """Show the partition given as the tree node of every fine region."""
        from ..core.regions import labels_from_nodes, region_boundaries

        self._nodes = nodes
        self._labels = labels_from_nodes(self.hierarchy, nodes)
        n = int(self._labels.max())
        self.count_label.setText(f"{n} regions")
        edges = region_boundaries(self._labels).astype(np.uint8)
        layer = self.regions_layer()
        if layer is None or layer.data.shape != edges.shape:
            self._add_regions_layer(edges)
        else:
            layer.data = edges

    def regions_layer(self):
        """The ``SSeg regions`` layer this panel draws into, or None."""
        layer = self._regions_layer
        if layer is not None and layer in self.viewer.layers:
            return layer
        return None

    def _add_regions_layer(self, edges: np.ndarray) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        old = self.regions_layer()
        if old is not None:
            self.viewer.layers.remove(old)
        kw = {}
        image = (self.viewer.layers[self._image_name]
                 if self._image_name in self.viewer.layers else None)
        if image is not None:
            kw = {"scale": image.scale[-2:], "translate": image.translate[-2:]}
        cmap = DirectLabelColormap(color_dict={1: BOUNDARY_COLOUR, None: "transparent"},
                                   background_value=0)
        layer = self.viewer.add_labels(edges, name=REGIONS_NAME, opacity=0.9, colormap=cmap,
                                       metadata={REGIONS_KEY: True}, **kw)
        layer.editable = False
        layer.mouse_drag_callbacks.append(self._on_drag)
        layer.bind_key(".", lambda _layer: self.step_at_cursor(coarser=True), overwrite=True)
        layer.bind_key(",", lambda _layer: self.step_at_cursor(coarser=False), overwrite=True)
        self._regions_layer = layer
        if self.brush_btn.isChecked():
            self._on_brush_toggled(True)

    def _on_layer_removed(self, event=None) -> None:
        if self._regions_layer is not None and self._regions_layer not in self.viewer.layers:
            self._regions_layer = None
            self.brush_btn.setChecked(False)
        self._refresh_classes()

    # ---------------------------------------------------------------- local steps
    def _pixel(self, world_position) -> tuple[int, int] | None:
        """Full-resolution (row, col) of a world position, or None outside the image."""
        layer = self.regions_layer()
        if layer is None or self.hierarchy is None:
            return None
        r, c = (int(np.floor(v + 0.5)) for v in layer.world_to_data(world_position)[-2:])
        m, n = self.hierarchy.shape
        if not (0 <= r < m and 0 <= c < n):
            return None
        return r, c

    def step_at(self, row: int, col: int, *, coarser: bool) -> None:
        """Make the region at (row, col) one level coarser or finer."""
        from ..core.regions import coarser_at, finer_at

        if self.hierarchy is None or self._nodes is None:
            return
        fid = self.hierarchy.fine_at(row, col)
        step = coarser_at if coarser else finer_at
        self.set_partition(step(self.hierarchy, self._nodes, fid))

    def step_at_cursor(self, *, coarser: bool) -> None:
        pix = self._pixel(self.viewer.cursor.position)
        if pix is not None:
            self.step_at(*pix, coarser=coarser)

    # ---------------------------------------------------------------- region brush
    def _refresh_classes(self, event=None) -> None:
        from .._classes import CLASS_ID_KEY
        from .._widget import class_layers

        current = self.class_combo.currentText()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        for layer in class_layers(self.viewer):
            self.class_combo.addItem(layer.name, int(layer.metadata[CLASS_ID_KEY]))
        if current:
            self.class_combo.setCurrentText(current)
        self.class_combo.blockSignals(False)

    def _on_brush_toggled(self, on: bool) -> None:
        layer = self.regions_layer()
        if layer is None:
            return
        if on:
            self.viewer.layers.selection.active = layer
            layer.mode = "pan_zoom"
        layer.mouse_pan = not on
        self.host._set_status("region brush: click or drag over regions to fill them"
                              if on else "region brush off")

    def fill_at(self, row: int, col: int, class_id: int) -> None:
        """Fill the region at (row, col) of the shown partition with ``class_id``."""
        self.fill_regions([(row, col)], class_id)

    def fill_regions(self, pixels, class_id: int) -> None:
        """Fill every region holding one of ``pixels`` ((row, col) pairs) with ``class_id``,
        as one undoable edit of ``SSeg labels``."""
        if self._labels is None:
            return
        out = self._output_layer(class_id)
        if out is None:
            return
        ids = np.unique([self._labels[r, c] for r, c in pixels])
        with out.block_history():
            for rid in ids.tolist():
                idx = np.nonzero(self._labels == rid)
                out.data_setitem(idx, class_id)

    def _output_layer(self, class_id: int):
        """``SSeg labels``, created empty (background only) over the image when missing."""
        from napari.utils.colormaps import DirectLabelColormap

        from .._classes import CLASS_ID_KEY, OUTPUT_KEY, background_value, class_colour
        from .._widget import OUTPUT_NAME, class_layers

        shape = self.hierarchy.shape
        out = self.host.output_layer()
        if out is not None and out.data.shape[-2:] != shape:
            self.host._notify_error(
                f"layer {out.name!r} has shape {out.data.shape}, the regions {shape}: "
                "rebuild the regions for this image")
            return None
        if out is not None and out.data.ndim != 2:
            self.host._notify_error(f"layer {out.name!r} is not 2D; the region brush fills 2D "
                                    "labels")
            return None
        if out is not None:
            if class_id >= np.iinfo(out.data.dtype).max:
                self.host._notify_error(f"class id {class_id} does not fit layer {out.name!r}")
                return None
            return out
        ids = [int(v.metadata[CLASS_ID_KEY]) for v in class_layers(self.viewer)] + [class_id]
        bg = background_value(max(ids))
        data = np.full(shape, bg, dtype=np.uint8 if bg == 255 else np.uint16)
        colours = {cid: class_colour(cid) for cid in ids}
        colours[None] = "transparent"
        kw = {}
        layer = self.regions_layer()
        if layer is not None:
            kw = {"scale": layer.scale, "translate": layer.translate}
        out = self.viewer.add_labels(
            data, name=OUTPUT_NAME, opacity=0.5, metadata={OUTPUT_KEY: True},
            colormap=DirectLabelColormap(color_dict=colours, background_value=bg), **kw)
        if layer is not None:  # keep the boundaries on top and the brush active
            self.viewer.layers.move(self.viewer.layers.index(layer), len(self.viewer.layers))
            self.viewer.layers.selection.active = layer
        corrections = getattr(self.host, "panels", {}).get("Corrections")
        if corrections is not None:  # it records edits of 'SSeg labels' from now on
            corrections.after_apply(None)
        return out

    def _on_drag(self, layer, event):
        """Mouse callback of the ``SSeg regions`` layer (a generator: press, moves, release)."""
        if not self.brush_btn.isChecked() or self.hierarchy is None:
            return
        pix = self._pixel(event.position)
        if pix is None:
            return
        mods = {getattr(k, "name", str(k)) for k in event.modifiers}
        if "Shift" in mods or "Alt" in mods:
            self.step_at(*pix, coarser="Shift" in mods)
            return
        class_id = self.class_combo.currentData()
        if class_id is None:
            self.host._notify_error("no class for the region brush: add a class first")
            return
        out = self._output_layer(int(class_id))
        if out is None:
            return
        done = set()
        with out.block_history():  # one drag, one undo step
            while True:
                if pix is not None:
                    rid = int(self._labels[pix])
                    if rid not in done:
                        done.add(rid)
                        out.data_setitem(np.nonzero(self._labels == rid), int(class_id))
                yield
                if event.type != "mouse_move":
                    break
                pix = self._pixel(event.position)
        self.host._set_status(f"region brush: filled {len(done)} region(s) with "
                              f"{self.class_combo.currentText()!r}")
