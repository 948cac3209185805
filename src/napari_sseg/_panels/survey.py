"""The *Survey model* section: learn from every image in the viewer, label images without points.

* *Train* collects every 2D image layer (or plane) that holds class points, expands its points
  into pseudo-labels and trains the default forest on them, in a thread worker (the dock
  widget's progress bar and Cancel; a cancelled training writes no model). The model goes to
  the folder in the *Model folder* field (a new temporary folder when it is empty); its
  validation score is shown.
* *Load...* opens a saved model folder (``napari-sseg train`` writes the same folders).
* *Predict* labels the chosen image with the model alone (no points needed), into the same
  ``SSeg labels`` layer as *Expand*.
* *Use in Expand*: the model's class probabilities join every expansion as a third expert
  (the points' cross-validation weighs it per image), so a few points correct the model.

Workers get copies of the pixels and points; they never touch a layer.
"""

from __future__ import annotations

import logging
from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

logger = logging.getLogger(__name__)


def train_steps(items, folder: str, class_names: dict, minutes: float | None):
    """Worker body: yields (fraction, message), returns (card, folder)."""
    from ..learn.train import TrainOptions, iter_train

    opts = TrainOptions(max_minutes=minutes or None)
    gen = iter_train(items, folder, class_names=class_names, options=opts)
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value, folder
        yield (ev.step / ev.total if ev.total else 0.0), f"survey model: {ev.message}"


def predict_steps(model, job):
    """Worker body: the model's labels for every slice of ``job``; returns (None, results)."""
    from ..core.expand import Expansion

    results = []
    n = len(job.slices)
    for i, sl in enumerate(job.slices):
        yield i / max(1, n), "survey model: predicting"
        labels, conf = model.predict(sl.image, where=job.image_name)
        results.append((sl.index, Expansion(labels, conf, {"method": f"survey model "
                                                                      f"({model.kind})"})))
    yield 1.0, "survey model: done"
    return None, results


def model_prior(model, image, classes) -> dict:
    """The expansion's survey-model arguments for one plane (runs in the expand worker)."""
    model.check_classes(classes, where="the class points")
    proba, _ = model.predict_proba(image, max_pixels=1_000_000)
    return {"prior_proba": proba, "prior_classes": model.classes}


class SurveyPanel(QWidget):
    """Train, load, predict with and expand with a survey model (see the module docstring)."""

    def __init__(self, host):
        super().__init__()
        self.host = host
        self.viewer = host.viewer
        self.model = None

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Model folder"))
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("empty: a new temporary folder")
        row.addWidget(self.folder_edit, 1)
        self.load_btn = QPushButton("Load...")
        self.load_btn.setToolTip("Open a model folder written by Train or 'napari-sseg train'")
        self.load_btn.clicked.connect(self._choose_and_load)
        row.addWidget(self.load_btn)
        lay.addLayout(row)

        row = QHBoxLayout()
        self.train_btn = QPushButton("Train")
        self.train_btn.setToolTip("Train a forest on every image in the viewer that has class "
                                  "points (their expansions are the training labels)")
        self.train_btn.clicked.connect(self.train)
        row.addWidget(self.train_btn)
        row.addWidget(QLabel("max minutes"))
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0, 600)
        self.minutes_spin.setValue(5)
        self.minutes_spin.setToolTip("Stop training after this long with the model so far "
                                     "(0: no limit)")
        row.addWidget(self.minutes_spin)
        self.predict_btn = QPushButton("Predict")
        self.predict_btn.setToolTip("Label the chosen image with the model alone")
        self.predict_btn.setEnabled(False)
        self.predict_btn.clicked.connect(self.predict)
        row.addWidget(self.predict_btn)
        lay.addLayout(row)

        self.use_check = QCheckBox("Use in Expand")
        self.use_check.setToolTip("The model's class probabilities join the expansion as a third "
                                  "expert, weighted per image by the points")
        self.use_check.setEnabled(False)
        lay.addWidget(self.use_check)
        self.info_label = QLabel("no model")
        self.info_label.setWordWrap(True)
        lay.addWidget(self.info_label)

    # ------------------------------------------------------------------ model
    def set_model(self, model) -> None:
        self.model = model
        card = model.card
        val = card.get("validation", {}).get("miou")
        score = "no validation split" if val is None else f"validation mIoU {100 * val:.1f}"
        names = ", ".join(model.class_names.values())
        n_img = len(card.get("training", {}).get("images", []))
        self.info_label.setText(f"{model.kind} on {n_img} image(s); classes {names}; {score}")
        self.predict_btn.setEnabled(True)
        self.use_check.setEnabled(True)

    def load(self, folder) -> bool:
        """Load a model folder; a bad folder is a notification, not a traceback."""
        from ..learn import ModelError, load_model

        try:
            model = load_model(folder)
        except (ModelError, ImportError, OSError) as exc:
            self.host._notify_error(str(exc))
            return False
        self.folder_edit.setText(str(folder))
        self.set_model(model)
        self.host._set_status(f"survey model loaded from {folder}")
        return True

    def _choose_and_load(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Survey model folder")
        if folder:
            self.load(folder)

    # ------------------------------------------------------------------ training
    def training_items(self):
        """(items, class names, skipped layer names) from every image layer with points."""
        from napari.layers import Image

        from .._widget import snapshot_expand_job
        from ..learn.dataset import TrainingItem

        items, names, skipped = [], {}, []
        for layer in list(self.viewer.layers):
            if not isinstance(layer, Image):
                continue
            try:
                job = snapshot_expand_job(self.viewer, layer)
            except ValueError as exc:
                skipped.append(f"{layer.name} ({exc})")
                continue
            names.update(job.class_names)
            for sl in job.slices:
                where = f"{layer.name}{list(sl.index) if sl.index else ''}"
                items.append(TrainingItem(Path(where), points=sl.points, image=sl.image))
        return items, names, skipped

    def train(self) -> None:
        from napari.qt.threading import create_worker

        if self.host.is_busy():
            self.host._notify_error("SSeg is busy: wait for it or press Cancel first")
            return
        items, names, skipped = self.training_items()
        if not items:
            self.host._notify_error("no image in the viewer has class points to learn from: "
                                    "add classes and click points first")
            return
        folder = self.folder_edit.text().strip()
        if not folder:
            import tempfile

            folder = tempfile.mkdtemp(prefix="sseg-survey-")
        if skipped:
            logger.info("survey model: left out %s", "; ".join(skipped))
        worker = create_worker(train_steps, items, folder, names,
                               float(self.minutes_spin.value()), _start_thread=False,
                               _connect={"errored": self.host._on_error})
        worker.yielded.connect(self.host._on_progress)
        worker.returned.connect(self._trained)
        self.host._start(worker, f"training a survey model on {len(items)} image(s)")

    def _trained(self, result) -> None:
        _card, folder = result
        self.load(folder)

    # ------------------------------------------------------------------ prediction
    def predict(self) -> None:
        from napari.qt.threading import create_worker

        from .._widget import snapshot_expand_job

        if self.model is None or self.host.is_busy():
            return
        try:
            job = snapshot_expand_job(self.viewer, self.host.image_layer(), allow_empty=True)
        except ValueError as exc:
            self.host._notify_error(str(exc))
            return
        job.class_names = dict(self.model.class_names)
        worker = create_worker(predict_steps, self.model, job, _start_thread=False,
                               _connect={"errored": self.host._on_error})
        worker.yielded.connect(self.host._on_progress)
        worker.returned.connect(lambda res, job=job: self.host._apply_expansion(job, None, res))
        self.host._start(worker, "predicting with the survey model")

    # ------------------------------------------------------------------ expansion hook
    def prepare_job(self, job) -> None:
        """Give every plane of an expansion the model as its third expert (when checked)."""
        if self.model is None or not self.use_check.isChecked():
            return
        from functools import partial

        for sl in job.slices:
            sl.prior = partial(model_prior, self.model)
