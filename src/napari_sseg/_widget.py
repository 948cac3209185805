"""The "SSeg" dock widget: class Points layers in, one "SSeg labels" Labels layer out.

Rules kept here (see docs/ARCHITECTURE.md):

* inputs are snapshotted on the Qt main thread (copies of arrays, points converted through world
  coordinates so scale and translate are honoured);
* the core runs in a napari thread worker (a generator: progress events, cancellable) that never
  touches a layer or widget;
* results are applied on the main thread into one output layer, updated (undoably) rather than
  duplicated, with the image's scale and translate. Cancel or an error leaves it as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from napari.layers import Image, Labels, Points
from qtpy.QtCore import QTimer
from qtpy.QtGui import QStandardItemModel
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ._classes import (
    CLASS_COLOUR_KEY,
    CLASS_ID_KEY,
    CLASS_NAME_KEY,
    OUTPUT_KEY,
    SUGGESTIONS_KEY,
    background_value,
    class_colour,
    class_layer_kwargs,
)

logger = logging.getLogger(__name__)

OUTPUT_NAME = "SSeg labels"
SUGGESTIONS_NAME = "suggestions"
ACQUISITION_NAME = "SSeg acquisition"
LIVE_DELAY_MS = 600

# (label shown, backend, model)
BACKEND_CHOICES = (
    ("Superpixels only (no weights)", "superpixel", None),
    ("SAM2.1 tiny + superpixels", "sam2", "tiny"),
    ("SAM2.1 small + superpixels", "sam2", "small"),
    ("SAM2.1 base+ + superpixels", "sam2", "base_plus"),
    ("SAM2.1 large + superpixels", "sam2", "large"),
)
NO_CHECKPOINT_TIP = "No SAM2.1 {model} checkpoint found. {how} Then reopen this widget."
NO_POINTS = "the class layers hold no points: click at least one point of a class on the image"


# --------------------------------------------------------------------------- snapshots (main thread)
@dataclass
class SliceJob:
    """One 2D plane to expand: its index in the image's leading axes, pixels and points."""

    index: tuple[int, ...]
    image: np.ndarray
    points: object  # core.points.PointSet
    corrections: np.ndarray | None = None  # painted pixels (255 / 65535 = none), see _panels
    prior: object = None  # (image, classes) -> survey-model kwargs of the expansion, see _panels


@dataclass
class VolumeJob:
    """One (Z, M, N[, C]) volume to expand as a whole: its index in the axes before the planes
    (() for a 3D image, (t,) for a 4D one), voxels, points (with planes) and voxel spacing."""

    index: tuple[int, ...]
    volume: np.ndarray
    points: object  # core.points.PointSet with planes
    spacing: tuple[float, float, float]


@dataclass
class ExpandJob:
    """Everything a worker needs, copied from the layers on the main thread."""

    image_name: str
    shape: tuple[int, ...]  # spatial shape of the output labels (leading axes + rows, cols)
    slices: list[SliceJob]
    class_names: dict[int, str]
    colours: dict[int, str]
    signature: tuple = field(default=())
    volumes: list[VolumeJob] = field(default_factory=list)


def _affine_of(layer, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, b) with world = M @ data + b for ``layer`` (public data_to_world, probed on a basis)."""
    origin = np.asarray(layer.data_to_world(np.zeros(ndim)), dtype=float)
    mat = np.empty((origin.size, ndim))
    for i in range(ndim):
        e = np.zeros(ndim)
        e[i] = 1.0
        mat[:, i] = np.asarray(layer.data_to_world(e), dtype=float) - origin
    return mat, origin


def points_to_image_data(points_layer, image_layer, world_fill: np.ndarray) -> np.ndarray:
    """Coordinates of ``points_layer`` in the data coordinates of ``image_layer``.

    Points go through world coordinates (``data_to_world`` / ``world_to_data`` of the two layers),
    so each layer's scale, translate, rotation and shear are honoured. Missing leading world axes
    (a 2D points layer over a stack) take the viewer's current position ``world_fill``.
    """
    data = np.asarray(points_layer.data, dtype=float)
    if data.size == 0:
        return np.zeros((0, image_layer.ndim))
    pm, pb = _affine_of(points_layer, points_layer.ndim)
    world = data @ pm.T + pb
    nd_img = image_layer.ndim
    if world.shape[1] < nd_img:
        lead = np.broadcast_to(world_fill[-nd_img:][: nd_img - world.shape[1]],
                               (world.shape[0], nd_img - world.shape[1]))
        world = np.concatenate([lead, world], axis=1)
    world = world[:, -nd_img:]
    im, ib = _affine_of(image_layer, nd_img)
    return np.linalg.solve(im, (world - ib).T).T


def class_layers(viewer) -> list:
    """Points layers tagged as classes, in layer order."""
    return [
        layer for layer in viewer.layers
        if isinstance(layer, Points) and CLASS_ID_KEY in layer.metadata
    ]


def _layer_colour(layer) -> str | None:
    col = layer.metadata.get(CLASS_COLOUR_KEY)
    return str(col) if col else None


def snapshot_expand_job(viewer, image_layer, *, channel_layers=(), allow_empty=False,
                        volume=False) -> ExpandJob:
    """Copy what an expansion needs from the layers (main thread).

    With ``allow_empty`` (suggestions for the very first clicks) an image without class points
    gives one slice, the plane shown now, with no points. With ``volume`` a 3D image becomes
    one :class:`VolumeJob` (every plane is labelled) and a 4D (t, z) one a volume per time
    point holding points; otherwise each plane holding points is a :class:`SliceJob`.

    Raises
    ------
    ValueError
        Naming the layer and what is wrong (no classes, no points, points outside the image,
        unsupported image).
    """
    from .core.points import PointSet

    if image_layer is None:
        raise ValueError("no image layer: open an image and pick it in the SSeg widget")
    layers = class_layers(viewer)
    if not layers and not allow_empty:
        raise ValueError(
            "no class layers: press 'Add class' (or open a points file) and click points on the image"
        )
    nd = image_layer.ndim
    data = image_layer.data[0] if image_layer.multiscale else image_layer.data  # full resolution
    spatial = tuple(int(v) for v in data.shape[:nd])
    if nd < 2:
        raise ValueError(f"image layer {image_layer.name!r}: needs at least 2 dimensions")
    world_fill = np.asarray(viewer.dims.point, dtype=float)
    coords, labels, names, colours = [], [], {}, {}
    for layer in layers:
        cid = int(layer.metadata[CLASS_ID_KEY])
        names[cid] = str(layer.metadata.get(CLASS_NAME_KEY, layer.name))
        col = _layer_colour(layer)
        if col:
            colours[cid] = col
        pts = points_to_image_data(layer, image_layer, world_fill)
        if len(pts) == 0:
            continue
        rc = np.floor(pts + 0.5).astype(np.int64)
        outside = np.any((rc < 0) | (rc >= np.asarray(spatial)), axis=1)
        if outside.any():
            bad = np.flatnonzero(outside)
            shown = ", ".join(f"#{i}" for i in bad[:8])
            raise ValueError(
                f"class layer {layer.name!r}: {bad.size} point(s) outside image "
                f"{image_layer.name!r} ({shown}); delete them or pick the right image"
            )
        coords.append(pts)
        labels.append(np.full(len(pts), cid, dtype=np.int64))
    if not coords and not allow_empty:
        raise ValueError(NO_POINTS)
    if not coords:  # no points yet: the plane shown now
        here = np.asarray(points_to_image_data_position(viewer, image_layer), dtype=float)
        coords = [np.zeros((0, nd))]
        labels = [np.zeros(0, dtype=np.int64)]
        lead_empty = np.clip(here, 0, np.asarray(spatial[: nd - 2]) - 1).astype(np.int64)
    else:
        lead_empty = None
    coords = np.concatenate(coords)
    labels = np.concatenate(labels)
    lead = np.floor(coords[:, : nd - 2] + 0.5).astype(np.int64)
    extra = [c.data for c in channel_layers]
    sig = (image_layer.name, id(data), spatial, coords.round(3).tobytes(), labels.tobytes(),
           tuple(id(c.data) for c in channel_layers), bool(volume))
    if volume and nd >= 3 and lead_empty is None:
        vols = []
        outer = lead[:, : nd - 3]
        spacing = tuple(float(v) for v in np.asarray(image_layer.scale)[nd - 3:nd])
        for key in sorted({tuple(k) for k in outer.tolist()}):
            sel = (np.all(outer == np.asarray(key, dtype=np.int64), axis=1) if key
                   else np.ones(len(lead), bool))
            vol = np.array(data[key] if key else data, copy=True)
            if extra:
                parts = [vol if vol.ndim == 4 else vol[..., None]]
                parts += [np.asarray(e[key] if key else e)[..., None] for e in extra]
                vol = np.concatenate(parts, axis=3)
            pset = PointSet(coords[sel, nd - 2:], labels[sel], names, planes=lead[sel, nd - 3])
            vols.append(VolumeJob(key, vol, pset, spacing))
        return ExpandJob(image_layer.name, spatial, [], names, colours, sig, vols)
    slices = []
    keys = {tuple(k) for k in lead.tolist()} if lead_empty is None else {tuple(lead_empty.tolist())}
    for key in sorted(keys):
        sel = np.all(lead == np.asarray(key, dtype=np.int64), axis=1) if key else np.ones(len(lead), bool)
        plane = np.array(data[key] if key else data, copy=True)
        if extra:
            planes = [plane if plane.ndim == 3 else plane[:, :, None]]
            planes += [np.asarray(e[key] if key else e)[:, :, None] for e in extra]
            plane = np.concatenate(planes, axis=2)
        pset = PointSet(coords[sel, nd - 2:], labels[sel], names)
        slices.append(SliceJob(key, plane, pset))
    return ExpandJob(image_layer.name, spatial, slices, names, colours, sig)


# --------------------------------------------------------------------------- work (worker thread)
def expand_job_steps(job: ExpandJob, proposer_factory, cached_proposer):
    """Worker generator: yields ``(fraction, message)``, returns ``(proposer, [(index, Expansion)])``.

    Never touches napari objects: it gets copies and returns arrays.
    """
    from .core.pipeline import iter_expand_image

    proposer = cached_proposer
    if proposer is None and proposer_factory is not None:
        yield 0.0, "loading model"
        proposer = proposer_factory()
    results = []
    if job.volumes:
        from .core.volume import iter_expand_volume

        n = len(job.volumes)
        for i, vj in enumerate(job.volumes):
            gen = iter_expand_volume(vj.volume, vj.points, spacing=vj.spacing)
            where = f"time {vj.index[0]}: " if vj.index else ""
            results.append((vj.index, (yield from _fractions(gen, i, n, where))))
        return proposer, results
    n = len(job.slices)
    for i, sl in enumerate(job.slices):
        extra = {}
        if sl.prior is not None:  # a survey model as the third expert (runs here, not in Qt)
            yield i / n, "survey model"
            extra = sl.prior(sl.image, sl.points.classes)
        gen = iter_expand_image(sl.image, sl.points, proposer=proposer,
                                corrections=sl.corrections, **extra)
        where = f"slice {sl.index}: " if sl.index else ""
        results.append((sl.index, (yield from _fractions(gen, i, n, where))))
    return proposer, results


def _fractions(gen, i: int, n: int, where: str):
    """Drive the progress generator of job ``i`` of ``n``: yields ``(fraction of all jobs,
    message)``, returns its result."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        yield (i + (ev.step / ev.total if ev.total else 0.0)) / n, where + ev.message


def suggest_steps(job: ExpandJob, cached, n_points: int, want_map: bool, seed: int):
    """Worker generator for suggestions on the first slice of ``job``.

    Returns ``(index, expansion, suggestions (n, 2) (row, col), acquisition map or None)``.
    """
    from .core import suggest as suggest_mod
    from .core.pipeline import iter_expand_image

    sl = job.slices[0]
    expansion = cached
    if expansion is None and len(sl.points):  # with no points yet, suggestions need none
        gen = iter_expand_image(sl.image, sl.points, corrections=sl.corrections)
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                expansion = stop.value
                break
            yield 0.8 * ev.step / max(ev.total, 1), ev.message
    yield 0.85, "choosing points"
    coords = suggest_mod.suggest_points(sl.image, sl.points, expansion, n_points, seed=seed)
    amap = None
    acq = getattr(suggest_mod, "acquisition_map", None)
    if want_map and acq is not None:
        yield 0.95, "acquisition map"
        amap = np.asarray(acq(sl.image, sl.points, expansion), dtype=np.float32)
    return sl.index, expansion, np.asarray(coords, dtype=float).reshape(-1, 2), amap


def suggest_volume_steps(vj: VolumeJob, cached, n_points: int, seed: int):
    """Worker generator for suggestions in a volume: the least confident plane, then positions.

    The plane is the one whose mean confidence in the volume expansion (``cached``, or computed
    here) is lowest; the positions come from the 2D suggestions on that plane with that plane's
    part of the expansion. Returns ``(plane, expansion, suggestions (n, 2) (row, col))``.
    """
    from .core.expand import Expansion
    from .core.suggest import suggest_points
    from .core.volume import iter_expand_volume

    expansion = cached
    if expansion is None:
        gen = iter_expand_volume(vj.volume, vj.points, spacing=vj.spacing)
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                expansion = stop.value
                break
            yield 0.8 * ev.step / max(ev.total, 1), ev.message
    yield 0.85, "choosing a plane and points"
    plane = int(np.argmin(expansion.confidence.reshape(len(expansion.confidence), -1)
                          .mean(axis=1)))
    here = Expansion(expansion.labels[plane], expansion.confidence[plane])
    coords = suggest_points(vj.volume[plane], vj.points.on_plane(plane), here, n_points,
                            seed=seed)
    return plane, expansion, np.asarray(coords, dtype=float).reshape(-1, 2)


# --------------------------------------------------------------------------- the widget
class SSegWidget(QWidget):
    """Dock widget: pick an image, add classes, click points, Expand, Suggest."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self._progress = None
        self._proposer = None
        self._proposer_key = None
        self._last = None  # (signature, index, Expansion) of the latest finished expansion
        self._rerun = False
        self._succeeded = False
        self._error_text = ""
        self._watched: set[int] = set()

        self.image_combo = QComboBox()
        self.channels_check = QCheckBox("+ same-shape images as channels")
        self.backend_combo = QComboBox()
        self.class_name_edit = QLineEdit()
        self.class_name_edit.setPlaceholderText("class name")
        self.add_class_btn = QPushButton("Add class")
        self.expand_btn = QPushButton("Expand")
        self.cancel_btn = QPushButton("Cancel")
        self.live_check = QCheckBox("Live (re-expand when points change)")
        self.all_planes_check = QCheckBox("Stacks: label all planes (3D)")
        self.all_planes_check.setChecked(True)
        self.all_planes_check.setToolTip(
            "On a 3D (or t, z) image, points on any planes label every plane through one "
            "region graph across the planes (layer scale = voxel spacing). Unchecked: only the "
            "planes holding points are expanded, each on its own."
        )
        self.progress_bar = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.n_suggest = QSpinBox()
        self.n_suggest.setRange(1, 200)
        self.n_suggest.setValue(5)
        self.map_check = QCheckBox("show acquisition map")
        self.suggest_btn = QPushButton("Suggest points")
        self.assign_combo = QComboBox()
        self.assign_btn = QPushButton("Assign selected")

        self.expand_btn.setToolTip("Expand the class points into the 'SSeg labels' layer")
        self.channels_check.setToolTip(
            "Stack the other image layers of the same shape with the chosen one as extra "
            "channels (multichannel data opened with one layer per channel)"
        )
        self.cancel_btn.setEnabled(False)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.assign_btn.setToolTip("Move the selected suggestions into the chosen class layer")

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("", self.channels_check)
        form.addRow("method", self.backend_combo)
        row = QHBoxLayout()
        row.addWidget(self.class_name_edit)
        row.addWidget(self.add_class_btn)
        form.addRow("classes", row)
        run = QHBoxLayout()
        run.addWidget(self.expand_btn)
        run.addWidget(self.cancel_btn)
        sugg = QGroupBox("Suggestions")
        sform = QFormLayout(sugg)
        srow = QHBoxLayout()
        srow.addWidget(self.n_suggest)
        srow.addWidget(self.suggest_btn)
        sform.addRow("points", srow)
        sform.addRow("", self.map_check)
        arow = QHBoxLayout()
        arow.addWidget(self.assign_combo)
        arow.addWidget(self.assign_btn)
        sform.addRow("to class", arow)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(run)
        lay.addWidget(self.live_check)
        lay.addWidget(self.all_planes_check)
        lay.addWidget(self.progress_bar)
        lay.addWidget(self.status)
        lay.addWidget(sugg)
        from ._panels import make_panels

        # the further sections share one tab widget, so the dock stays short on a laptop screen
        self.panel_tabs = QTabWidget()
        self.panels = {}
        for title, panel in make_panels(self):
            self.panel_tabs.addTab(panel, title)
            self.panels[title] = panel
        if self.panels:
            lay.addWidget(self.panel_tabs)
        lay.addStretch(1)

        self._live_timer = QTimer(self)
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_DELAY_MS)
        self._live_timer.timeout.connect(self._on_live_timeout)

        self._fill_backends()
        self.add_class_btn.clicked.connect(self.add_class)
        self.expand_btn.clicked.connect(self.expand)
        self.cancel_btn.clicked.connect(self.cancel)
        self.suggest_btn.clicked.connect(self.suggest)
        self.assign_btn.clicked.connect(self.assign_selected)
        self.backend_combo.currentIndexChanged.connect(self._on_backend_changed)
        self.image_combo.currentIndexChanged.connect(lambda _: self._show_stack_options())
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.viewer.layers.events.changed.connect(self._refresh_layers)
        self._refresh_layers()

    def show_panel(self, title: str):
        """Bring the section ``title`` (a key of :attr:`panels`) to the front; returns it."""
        panel = self.panels[title]
        self.panel_tabs.setCurrentWidget(panel)
        return panel

    # ---------------------------------------------------------------- layer bookkeeping
    def _refresh_layers(self, event=None) -> None:
        images = [
            layer.name for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.metadata.get(OUTPUT_KEY)
        ]
        current = self.image_combo.currentText()
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(images)
        if current in images:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        self._show_stack_options()
        classes = class_layers(self.viewer)
        cur_assign = self.assign_combo.currentText()
        self.assign_combo.clear()
        self.assign_combo.addItems([c.name for c in classes])
        if cur_assign:
            self.assign_combo.setCurrentText(cur_assign)
        for layer in classes:
            if id(layer) not in self._watched:
                self._watched.add(id(layer))
                layer.events.data.connect(self._on_points_changed)

    def _show_stack_options(self) -> None:
        """The 'label all planes' option only for images with planes (3D or more)."""
        image = self.image_layer()
        self.all_planes_check.setVisible(image is not None and image.ndim >= 3)

    def image_layer(self):
        """The chosen image layer, or None."""
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _channel_layers(self, image):
        if not self.channels_check.isChecked() or image is None or image.rgb:
            return []
        return [
            layer for layer in self.viewer.layers
            if layer.name != image.name and isinstance(layer, Image) and not layer.rgb
            and layer.data.shape == image.data.shape and not layer.metadata.get(OUTPUT_KEY)
        ]

    def output_layer(self):
        """The "SSeg labels" layer this widget owns, or None."""
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and layer.metadata.get(OUTPUT_KEY):
                return layer
        return None

    # ---------------------------------------------------------------- backends
    def _fill_backends(self) -> None:
        from . import backends

        find_checkpoint = getattr(backends, "find_checkpoint", None)
        model = QStandardItemModel()
        self.backend_combo.setModel(model)
        for label, backend, name in BACKEND_CHOICES:
            self.backend_combo.addItem(label, (backend, name))
            item = model.item(model.rowCount() - 1)
            if backend == "sam2":
                ckpt = None
                if find_checkpoint is not None:
                    try:
                        ckpt = find_checkpoint(name)
                    except Exception:  # noqa: BLE001 - never break the widget on a lookup
                        logger.debug("find_checkpoint(%r) failed", name, exc_info=True)
                if ckpt is None:
                    item.setEnabled(False)
                    item.setToolTip(NO_CHECKPOINT_TIP.format(model=name, how=_how_to_get(name)))
                else:
                    item.setToolTip(f"checkpoint: {ckpt}")
            else:
                item.setToolTip("Superpixel graph expansion only; needs no model weights")
        self.backend_combo.setCurrentIndex(0)

    def _on_backend_changed(self, index: int) -> None:
        self._proposer = None
        self._proposer_key = None
        self._last = None

    def _proposer_factory(self):
        backend, model = self.backend_combo.currentData() or ("superpixel", None)
        if backend != "sam2":
            return None, None
        key = (backend, model)

        def factory():
            from .backends import resolve_backend

            proposer, _ = resolve_backend(backend, model=model)
            return proposer

        return key, factory

    # ---------------------------------------------------------------- classes
    def add_class(self) -> None:
        """Add an empty class Points layer with its own colour, over the chosen image."""
        image = self.image_layer()
        existing = class_layers(self.viewer)
        ids = [int(c.metadata[CLASS_ID_KEY]) for c in existing]
        cid = max(ids) + 1 if ids else 1
        name = self.class_name_edit.text().strip() or f"class {cid}"
        nd = image.ndim if image is not None else 2
        size = 10.0
        kw = {}
        if image is not None:
            size = max(4.0, max(image.data.shape[nd - 2:nd]) / 60)
            kw = {"scale": image.scale, "translate": image.translate}
        colour = class_colour(cid)
        layer = self.viewer.add_points(**class_layer_kwargs(cid, name, colour, size=size, ndim=nd), **kw)
        layer.current_face_color = colour
        layer.mode = "add"
        self.class_name_edit.clear()

    # ---------------------------------------------------------------- expand
    def is_busy(self) -> bool:
        return self._worker is not None

    def expand(self) -> None:
        """Snapshot inputs and start the expansion worker."""
        from napari.qt.threading import create_worker

        if self.is_busy():
            self._rerun = True
            self._worker.quit()
            return
        try:
            image = self.image_layer()
            job = self._expand_job(image)
        except ValueError as exc:
            self._notify_error(str(exc))
            return
        key, factory = self._proposer_factory() if not job.volumes else (None, None)
        cached = self._proposer if key is not None and key == self._proposer_key else None
        worker = create_worker(
            expand_job_steps, job, factory, cached, _start_thread=False,
            _connect={"errored": self._on_error},
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda res, job=job, key=key: self._apply_expansion(job, key, res))
        self._start(worker, "expanding")

    def _expand_job(self, image) -> ExpandJob:
        """The expansion's job, its corrections attached; a 2D plane with corrections and no
        class points yet is expanded from its corrections alone (the plane shown now)."""
        volume = self.all_planes_check.isChecked()
        whole_stack = volume and image is not None and image.ndim >= 3
        job = snapshot_expand_job(self.viewer, image, channel_layers=self._channel_layers(image),
                                  volume=volume,
                                  allow_empty=not whole_stack and bool(class_layers(self.viewer)))
        self._panel_hook("prepare_job", job)
        if not job.volumes and not any(len(sl.points) or sl.corrections is not None
                                       for sl in job.slices):
            raise ValueError(f"{NO_POINTS} (or paint a correction on SSeg labels)")
        return job

    def cancel(self) -> None:
        """Stop the running worker at its next step; the previous labels stay as they were."""
        self._rerun = False
        if self._worker is not None:
            self._set_status("cancelling...")
            self._worker.quit()

    def _start(self, worker, what: str) -> None:
        from napari.utils import progress

        self._worker = worker
        self._succeeded = False
        self._error_text = ""
        worker.returned.connect(self._mark_success)
        self._progress = progress(total=100, desc=f"SSeg: {what}")
        worker.aborted.connect(lambda: self._set_status("cancelled; previous labels kept"))
        worker.finished.connect(self._on_finished)
        self.expand_btn.setText("Restart")
        self.cancel_btn.setEnabled(True)
        self.suggest_btn.setEnabled(False)
        self.progress_bar.setValue(0)
        self._set_status(what + "...")
        worker.start()

    def _mark_success(self, _result=None) -> None:
        self._succeeded = True

    def _on_progress(self, value) -> None:
        if self._worker is None:  # a late event of a worker that has already finished
            return
        frac, message = value
        pct = int(round(100 * frac))
        self.progress_bar.setValue(pct)
        self._set_status(message)
        bar = self._progress
        if bar is not None:  # napari's bar may process events (and finish the worker) here
            bar.n = pct
            bar.set_description(f"SSeg: {message}")

    def _on_error(self, exc: Exception) -> None:
        # connected through ``_connect`` so the worker does not re-raise in the main thread;
        # the user gets one clear notification, developers the traceback in the log
        logger.warning("SSeg worker failed", exc_info=exc)
        self._error_text = f"SSeg failed: {exc}"
        self._notify_error(self._error_text)

    def _on_finished(self) -> None:
        self._worker = None
        self.progress_bar.setValue(100 if self._succeeded else 0)
        if self._error_text:
            self._set_status(self._error_text)
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.expand_btn.setText("Expand")
        self.cancel_btn.setEnabled(False)
        self.suggest_btn.setEnabled(True)
        if self._rerun:
            self._rerun = False
            self.expand()

    def _panel_hook(self, name: str, *args) -> None:
        """Call ``name(*args)`` on every section that defines it (the corrections section
        copies painted pixels into jobs and keeps them in results)."""
        for panel in getattr(self, "panels", {}).values():
            hook = getattr(panel, name, None)
            if hook is not None:
                hook(*args)

    def _apply_expansion(self, job: ExpandJob, key, result) -> None:
        proposer, results = result
        self._panel_hook("before_apply", job, results)
        if key is not None:
            self._proposer, self._proposer_key = proposer, key
        image = self.viewer.layers[job.image_name] if job.image_name in self.viewer.layers else None
        max_id = max(max(job.class_names), max(int(e.labels.max()) for _, e in results))
        bg = background_value(max_id)
        dtype = np.uint8 if bg == 255 else np.uint16
        out = self.output_layer()
        fresh = out is None or out.data.shape != job.shape or out.data.dtype != dtype
        if fresh:
            data = np.full(job.shape, bg, dtype=dtype)
        else:
            data = None
        for index, expansion in results:
            plane = expansion.labels.astype(dtype, copy=False)
            if data is not None:
                data[index] = plane
            else:
                old = out.data[index] if index else out.data
                changed = np.nonzero(np.asarray(old) != plane)
                if changed[0].size:
                    idx = tuple(np.full(changed[0].size, i) for i in index) + changed
                    out.data_setitem(idx, plane[changed])
        colormap = self._labels_colormap(job, bg)
        if data is not None:
            kw = {}
            if image is not None:
                kw = {"scale": image.scale, "translate": image.translate}
            if out is None:
                out = self.viewer.add_labels(
                    data, name=OUTPUT_NAME, opacity=0.5, colormap=colormap,
                    metadata={OUTPUT_KEY: True}, **kw
                )
            else:
                out.data = data
                for k, v in kw.items():
                    setattr(out, k, v)
        out.colormap = colormap
        out.metadata["sseg_classes"] = dict(job.class_names)
        out.metadata["sseg_colours"] = dict(job.colours)
        idx0, exp0 = results[0]
        self._last = (job.signature, idx0, exp0)
        self._panel_hook("after_apply", job)
        n_planes = sum(e.labels.shape[0] if e.labels.ndim == 3 else 1 for _, e in results)
        self._set_status(
            f"labelled {n_planes} plane(s) of {job.image_name!r} with "
            f"{len(job.class_names)} class(es) ({exp0.info.get('method', '')})"
        )

    @staticmethod
    def _labels_colormap(job: ExpandJob, bg: int):
        from napari.utils.colormaps import DirectLabelColormap

        colours = {cid: class_colour(cid, job.colours) for cid in job.class_names}
        colours[None] = "transparent"
        return DirectLabelColormap(color_dict=colours, background_value=bg)

    # ---------------------------------------------------------------- live mode
    def _on_points_changed(self, event=None) -> None:
        if self.live_check.isChecked():
            self._live_timer.start()

    def _on_live_timeout(self) -> None:
        if self.live_check.isChecked():
            self.expand()

    # ---------------------------------------------------------------- suggestions
    def suggest(self) -> None:
        """Propose the next points (worker) and show them in the "suggestions" layer."""
        from napari.qt.threading import create_worker

        if self.is_busy():
            self._notify_error("SSeg is busy: wait for the expansion or press Cancel")
            return
        try:
            image = self.image_layer()
            job = snapshot_expand_job(self.viewer, image, channel_layers=self._channel_layers(image),
                                      allow_empty=True, volume=self.all_planes_check.isChecked())
        except ValueError as exc:
            self._notify_error(str(exc))
            return
        self._panel_hook("prepare_job", job)
        if job.volumes:  # a stack labelled as a whole: propose a plane and positions on it
            here = points_to_image_data_position(self.viewer, image)
            vj = next((v for v in job.volumes if v.index == here[: len(v.index)]), job.volumes[0])
            last = self._last
            cached = (last[2] if last is not None and last[0] == job.signature
                      and last[1] == vj.index else None)
            worker = create_worker(
                suggest_volume_steps, vj, cached, self.n_suggest.value(), 0,
                _start_thread=False, _connect={"errored": self._on_error},
            )
            worker.yielded.connect(self._on_progress)
            worker.returned.connect(
                lambda res, image=image, vj=vj: self._apply_volume_suggestions(image, vj, res))
            self._start(worker, "suggesting a plane and points")
            return
        if len(job.slices) > 1:  # stacks: the plane shown now, if it holds points
            here = points_to_image_data_position(self.viewer, image)
            pick = [s for s in job.slices if s.index == here] or job.slices[:1]
            job.slices = pick
        cached = None
        if self._last is not None and self._last[0] == job.signature and self._last[1] == job.slices[0].index:
            cached = self._last[2]
        worker = create_worker(
            suggest_steps, job, cached, self.n_suggest.value(), self.map_check.isChecked(),
            0, _start_thread=False, _connect={"errored": self._on_error},
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda res, image=image: self._apply_suggestions(image, res))
        self._start(worker, "suggesting points")

    def _apply_suggestions(self, image, result) -> None:
        index, _expansion, coords, amap = result
        nd = image.ndim
        data = np.concatenate(
            [np.broadcast_to(np.asarray(index, float), (len(coords), nd - 2)), coords], axis=1
        )
        layer = None
        for lay in self.viewer.layers:
            if isinstance(lay, Points) and lay.metadata.get(SUGGESTIONS_KEY):
                layer = lay
        size = max(6.0, max(image.data.shape[nd - 2:nd]) / 25)
        if layer is None:
            layer = self.viewer.add_points(
                data, name=SUGGESTIONS_NAME, ndim=nd, symbol="ring", face_color="#FF00FF",
                border_color="#FF00FF", border_width=0.1, size=size, scale=image.scale,
                translate=image.translate, metadata={SUGGESTIONS_KEY: True},
            )
        else:
            layer.data = data
        layer.selected_data = set()
        if amap is not None:
            if ACQUISITION_NAME in self.viewer.layers:
                self.viewer.layers[ACQUISITION_NAME].data = amap
            else:
                self.viewer.add_image(
                    amap, name=ACQUISITION_NAME, colormap="magma", opacity=0.5,
                    blending="additive", scale=image.scale[-2:], translate=image.translate[-2:],
                    metadata={OUTPUT_KEY: True},
                )
        self._set_status(
            f"{len(coords)} suggestion(s): select some, pick a class and press 'Assign selected'"
        )

    def _apply_volume_suggestions(self, image, vj: VolumeJob, result) -> None:
        plane, expansion, coords = result
        self._apply_suggestions(image, (vj.index + (plane,), expansion, coords, None))
        axis = image.ndim - 3  # show the proposed plane (world position of its plane axis)
        world = np.asarray(image.data_to_world(
            np.r_[np.asarray(vj.index + (plane,), float), 0.0, 0.0]), dtype=float)
        self.viewer.dims.set_point(self.viewer.dims.ndim - image.ndim + axis, world[axis])
        self._set_status(
            f"plane {plane}: {len(coords)} suggestion(s) on the least confident plane; select "
            f"some, pick a class and press 'Assign selected'"
        )

    def assign_selected(self) -> None:
        """Move the selected suggestions into the class layer chosen in "to class" (one undo step)."""
        sugg = next(
            (lay for lay in self.viewer.layers
             if isinstance(lay, Points) and lay.metadata.get(SUGGESTIONS_KEY)), None
        )
        name = self.assign_combo.currentText()
        if sugg is None or not len(sugg.data):
            self._notify_error("no suggestions: press 'Suggest points' first")
            return
        if name not in self.viewer.layers:
            self._notify_error("no class to assign to: add a class first")
            return
        selected = sorted(sugg.selected_data)
        if not selected:
            self._notify_error("select one or more suggestions (points in the 'suggestions' layer)")
            return
        target = self.viewer.layers[name]
        world_fill = np.asarray(self.viewer.dims.point, dtype=float)
        coords = points_to_image_data(_Subset(sugg, selected), target, world_fill)
        target.add(coords)
        sugg.selected_data = set(selected)
        sugg.remove_selected()
        self._set_status(f"assigned {len(selected)} suggestion(s) to {name!r}")

    # ---------------------------------------------------------------- messages
    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    def _notify_error(self, text: str) -> None:
        from napari.utils.notifications import show_error

        self._set_status(text)
        show_error(text)


def _how_to_get(model: str) -> str:
    """How to get the checkpoint of ``model`` (the backends' own instructions when available)."""
    from . import backends

    how = getattr(backends, "HOW_TO_DOWNLOAD", None)
    files = getattr(backends, "MODEL_FILES", {})
    cache = getattr(backends, "user_checkpoint_dir", lambda: "~/.cache/napari-sseg/checkpoints")()
    if how and model in files:
        return how.format(model=model, file=files[model], cache=cache)
    return f"Put sam2.1_hiera_{model}.pt into {cache}."


class _Subset:
    """A view of some points of a Points layer with the layer's transforms (for conversions)."""

    def __init__(self, layer, indices):
        self.data = np.asarray(layer.data)[indices]
        self.ndim = layer.ndim
        self.data_to_world = layer.data_to_world


def points_to_image_data_position(viewer, image_layer) -> tuple[int, ...]:
    """Leading (non-row/col) data index of ``image_layer`` at the viewer's current position."""
    nd = image_layer.ndim
    pos = np.asarray(image_layer.world_to_data(viewer.dims.point), dtype=float)
    return tuple(int(v) for v in np.floor(pos[: nd - 2] + 0.5))
