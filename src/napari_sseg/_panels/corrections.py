"""The *Corrections* section: what the user paints on ``SSeg labels`` is kept and used as evidence.

How it works (all on the Qt main thread, all through public napari API):

* Painting, filling or erasing on the ``SSeg labels`` layer with napari's own tools emits the
  layer's ``paint`` event with the edited pixels. Those pixels are copied into the
  ``SSeg corrections`` Labels layer (class id where painted, the labels' background value, 255 or
  65535, elsewhere): a stroke of a class is a correction of that class, the eraser hands the
  pixels back to the expansion. The corrections layer can also be painted or erased directly.
* ``undo`` / ``redo`` on ``SSeg labels`` emit no ``paint`` event but ``set_data``: the layer is
  compared with a copy taken after the last known change, and a corrected pixel whose value no
  longer matches its correction is handed back (the undo took the stroke away).
* Before every expansion (Expand, Live, SAM2 or weight-free) the widget copies the corrections
  of each plane into the job (:meth:`prepare_job`): the worker never reads a layer. When the
  result arrives, the corrections *as they are then* (including strokes made while the worker
  ran) are painted over it (:meth:`before_apply`), so no stroke is lost.
* *Save* / *Load* write and read the partial label image format of
  :mod:`napari_sseg.io.corrections` (the command line's ``--corrections`` folder uses it too).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)

CORRECTIONS_NAME = "SSeg corrections"
CORRECTIONS_KEY = "sseg_corrections"


class CorrectionsPanel(QWidget):
    """Keeps the user's painted corrections and hands them to every expansion.

    Parameters
    ----------
    host : SSegWidget
        The dock widget (its viewer, output layer, status line and live timer).
    """

    def __init__(self, host):
        super().__init__()
        self.host = host
        self._applying = False
        self._watched = None  # the output layer whose events are connected
        self._shadow = None  # copy of the output layer's data after the last known change
        self.info = QLabel("Paint, fill or erase on 'SSeg labels' after an expansion: painted "
                           "pixels keep their class in every later expansion and guide it.")
        self.info.setWordWrap(True)
        self.count = QLabel("no corrections")
        self.clear_btn = QPushButton("Clear")
        self.save_btn = QPushButton("Save...")
        self.load_btn = QPushButton("Load...")
        self.clear_btn.setToolTip("Forget every correction (the pixels go back to the expansion)")
        self.save_btn.setToolTip("Write the corrections as a partial label image (255 = none)")
        self.load_btn.setToolTip("Read corrections written by Save or for the command line")
        row = QHBoxLayout()
        for b in (self.clear_btn, self.save_btn, self.load_btn):
            row.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.info)
        lay.addWidget(self.count)
        lay.addLayout(row)
        self.clear_btn.clicked.connect(self.clear)
        self.save_btn.clicked.connect(self._save_dialog)
        self.load_btn.clicked.connect(self._load_dialog)
        host.viewer.layers.events.removed.connect(self._on_layer_removed)

    # ---------------------------------------------------------------- layers
    def corrections_layer(self):
        """The ``SSeg corrections`` Labels layer, or None."""
        for layer in self.host.viewer.layers:
            if layer.metadata.get(CORRECTIONS_KEY):
                return layer
        return None

    def corrections(self) -> np.ndarray | None:
        """The corrections (a copy), shaped like ``SSeg labels``, or None."""
        layer = self.corrections_layer()
        return None if layer is None else np.array(layer.data, copy=True)

    def _background(self, out=None) -> int:
        out = out if out is not None else self.host.output_layer()
        dtype = out.data.dtype if out is not None else np.uint8
        return 65535 if np.dtype(dtype) == np.uint16 else 255

    def _ensure_layer(self):
        """The corrections layer, created (empty) to match ``SSeg labels`` when missing."""
        out = self.host.output_layer()
        if out is None:
            return None
        layer = self.corrections_layer()
        bg = self._background(out)
        if layer is not None and layer.data.shape == out.data.shape and \
                layer.data.dtype == out.data.dtype:
            return layer
        data = np.full(out.data.shape, bg, dtype=out.data.dtype)
        if layer is not None:  # other shape or dtype: a new image or a wider class table
            old = np.asarray(layer.data)
            if old.shape == data.shape:
                painted = old != (65535 if old.dtype == np.uint16 else 255)
                data[painted] = old[painted]
            layer.data = data
        else:
            layer = self.host.viewer.add_labels(
                data, name=CORRECTIONS_NAME, opacity=0.9, scale=out.scale,
                translate=out.translate, metadata={CORRECTIONS_KEY: True, "sseg_output": True})
            layer.events.paint.connect(self._on_corrections_edited)
            layer.events.set_data.connect(self._on_corrections_edited)
        layer.colormap = self._colormap(out, bg)
        layer.contour = 0
        return layer

    @staticmethod
    def _colormap(out, bg):
        from napari.utils.colormaps import DirectLabelColormap

        colours = dict(getattr(out.colormap, "color_dict", {}) or {})
        colours[None] = "transparent"
        colours[bg] = "transparent"
        return DirectLabelColormap(color_dict=colours, background_value=bg)

    def _watch(self, out) -> None:
        if out is None or self._watched is out:
            return
        out.events.paint.connect(self._on_labels_painted)
        out.events.set_data.connect(self._on_labels_set)
        self._watched = out
        self._shadow = np.array(out.data, copy=True)

    def _on_layer_removed(self, event=None) -> None:
        if self._watched is not None and self._watched not in self.host.viewer.layers:
            self._watched = None
            self._shadow = None
        self._update_count()

    # ---------------------------------------------------------------- events on SSeg labels
    def _on_labels_painted(self, event) -> None:
        """Copy a stroke, fill or erase on ``SSeg labels`` into the corrections."""
        if self._applying:
            return
        out = self.host.output_layer()
        if out is None:
            return
        layer = self._ensure_layer()
        if layer is None:
            return
        bg = self._background(out)
        data = layer.data
        changed = False
        for atom in event.value:
            if hasattr(atom, "slice_key"):  # mask-based edit (brush, fill, polygon)
                key = atom.slice_key
                region = np.array(data[key], copy=True)
                value = bg if atom.new_value == out.colormap.background_value else atom.new_value
                if atom.mask is None:
                    region[...] = value
                else:
                    region[np.broadcast_to(atom.mask, region.shape)] = value
                data[key] = region
                if self._shadow is not None:
                    self._shadow[key] = np.asarray(out.data[key])
            else:  # (indices, old values, new values) from data_setitem
                idx, _, new = atom
                new = np.broadcast_to(np.asarray(new), np.asarray(idx[0]).shape)
                data[idx] = np.where(new == out.colormap.background_value, bg, new)
                if self._shadow is not None:
                    self._shadow[idx] = np.asarray(out.data)[idx]
            changed = True
        if changed:
            layer.refresh()
            self._changed()

    def _on_labels_set(self, event=None) -> None:
        """After undo / redo on ``SSeg labels``: hand back corrected pixels the undo changed."""
        if self._applying:
            return
        out = self.host.output_layer()
        if out is None:
            return
        now = np.asarray(out.data)
        if self._shadow is None or self._shadow.shape != now.shape:
            self._shadow = np.array(now, copy=True)
            return
        diff = now != self._shadow
        if not diff.any():
            return
        self._shadow = np.array(now, copy=True)
        layer = self.corrections_layer()
        if layer is None or layer.data.shape != now.shape:
            return
        corr = np.asarray(layer.data)
        bg = self._background(out)
        gone = diff & (corr != bg) & (corr != now)
        if gone.any():
            layer.data[gone] = bg
            layer.refresh()
            self._changed()

    def _on_corrections_edited(self, event=None) -> None:
        if not self._applying:
            self._changed()

    def _changed(self) -> None:
        self._update_count()
        self.host._on_points_changed()  # Live mode re-expands with the corrections

    def _update_count(self) -> None:
        layer = self.corrections_layer()
        n = 0
        if layer is not None:
            data = np.asarray(layer.data)
            n = int((data != (65535 if data.dtype == np.uint16 else 255)).sum())
        self.count.setText(f"{n} corrected pixel(s)" if n else "no corrections")

    # ---------------------------------------------------------------- hooks of the widget
    def prepare_job(self, job) -> None:
        """Give every plane of ``job`` a copy of its corrections (main thread, before a worker)."""
        layer = self.corrections_layer()
        if layer is None:
            return
        data = np.asarray(layer.data)
        if data.shape != tuple(job.shape):
            return  # corrections of another image: not used
        bg = 65535 if data.dtype == np.uint16 else 255
        for sl in job.slices:
            plane = data[sl.index] if sl.index else data
            if (plane != bg).any():
                sl.corrections = np.array(plane, copy=True)

    def before_apply(self, job, results) -> None:
        """Paint the corrections as they are now over each result plane (strokes made while the
        worker ran included), and ignore the output layer's events while the widget writes."""
        self._applying = True
        QTimer.singleShot(0, self._done_applying)  # after the (synchronous) apply, whatever happens
        layer = self.corrections_layer()
        if layer is None or tuple(layer.data.shape) != tuple(job.shape):
            return
        data = np.asarray(layer.data)
        bg = 65535 if data.dtype == np.uint16 else 255
        for index, expansion in results:
            plane = data[index] if index else data
            painted = plane != bg
            if painted.shape == expansion.labels.shape and painted.any():
                labels = expansion.labels
                if int(plane[painted].max()) > np.iinfo(labels.dtype).max:
                    labels = labels.astype(np.uint16)
                labels[painted] = plane[painted]
                expansion.labels = labels

    def after_apply(self, job) -> None:
        """The output layer is written: watch its edits from now on."""
        self._applying = False
        out = self.host.output_layer()
        if out is None:
            return
        if self._watched is not out:
            self._watch(out)
        else:
            self._shadow = np.array(out.data, copy=True)
        layer = self.corrections_layer()
        if layer is not None:
            self._ensure_layer()
        self._update_count()

    def _done_applying(self) -> None:
        self._applying = False

    # ---------------------------------------------------------------- buttons
    def clear(self) -> None:
        """Forget every correction."""
        layer = self.corrections_layer()
        if layer is None:
            return
        data = np.asarray(layer.data)
        layer.data = np.full(data.shape, 65535 if data.dtype == np.uint16 else 255, data.dtype)
        self.host._set_status("corrections cleared: the next expansion ignores them")
        self._changed()

    def save(self, path: str | Path) -> Path:
        """Write the corrections of a 2D image to ``path`` (partial label image)."""
        from ..io.corrections import write_corrections

        layer = self.corrections_layer()
        if layer is None:
            raise ValueError("no corrections to save: paint on 'SSeg labels' first")
        data = np.asarray(layer.data)
        if data.ndim != 2:
            raise ValueError(f"{CORRECTIONS_NAME!r}: only 2D corrections can be saved, got "
                             f"shape {data.shape}")
        classes = (self.host.output_layer().metadata.get("sseg_classes") or {}
                   if self.host.output_layer() is not None else {})
        written = write_corrections(path, data, max_id=max(classes) if classes else None)
        self.host._set_status(f"corrections saved to {written}")
        return written

    def load(self, path: str | Path) -> None:
        """Read corrections from ``path`` into the corrections layer (after an expansion)."""
        from ..io.corrections import read_corrections

        out = self.host.output_layer()
        if out is None:
            raise ValueError("expand first: corrections are loaded onto 'SSeg labels'")
        classes = out.metadata.get("sseg_classes") or None
        corr = read_corrections(path, tuple(out.data.shape[-2:]),
                                classes=list(classes) if classes else None)
        if out.data.ndim != 2:
            raise ValueError(f"{path}: corrections can be loaded onto 2D labels only")
        layer = self._ensure_layer()
        bg = self._background(out)
        data = np.full(out.data.shape, bg, dtype=out.data.dtype)
        painted = corr != (65535 if corr.dtype == np.uint16 else 255)
        if painted.any() and int(corr[painted].max()) >= bg:
            raise ValueError(f"{path}: class ids up to {int(corr[painted].max())} do not fit "
                             f"the labels of {out.data.dtype}")
        data[painted] = corr[painted]
        layer.data = data
        self.host._set_status(f"{int(painted.sum())} corrected pixel(s) loaded from {path}")
        self._changed()

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save corrections", "", "PNG (*.png)")
        if path:
            try:
                self.save(path)
            except (ValueError, OSError) as exc:
                self.host._notify_error(str(exc))

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load corrections", "",
                                              "Label images (*.png *.tif *.tiff)")
        if path:
            try:
                self.load(path)
            except (ValueError, OSError) as exc:
                self.host._notify_error(str(exc))
