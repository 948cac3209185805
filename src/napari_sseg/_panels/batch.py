"""The *Run on folder* section: ``napari-sseg expand`` on a folder of images, from the widget.

The section plans the run exactly as the command line does (same parser, same checks, same
``run.json``) with the widget's current backend, then runs it in a thread worker: the batch
engine (:mod:`napari_sseg.batch`) runs in a background thread and the worker yields its
progress (finished images / all images) to the widget's bar; *Cancel* stops the run between
images (the record says ``cancelled``; *Resume* continues it later). Nothing here touches a
layer: results are files in the output folder.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

logger = logging.getLogger(__name__)


def batch_steps(args):
    """Generator for a thread worker: run ``args.func(args)``, yield ``(fraction, message)``.

    Returns ``{"code": exit code, "record": run.json as read back}`` or ``{"error": message}``
    for input that stopped the command before any image.
    """
    from ..batch import load_record
    from ..cli import CliError

    events: queue.Queue = queue.Queue()
    result: dict = {}
    args.on_progress = lambda done, total, entry: events.put((done, total, entry))

    def target():
        try:
            result["code"] = int(args.func(args))
        except CliError as exc:
            result["error"] = str(exc)
        except Exception as exc:
            logger.warning("batch run failed", exc_info=True)
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            events.put(None)

    thread = threading.Thread(target=target, name="sseg-batch", daemon=True)
    thread.start()
    yield 0.0, "planning the run..."
    while True:
        try:
            item = events.get(timeout=0.2)
        except queue.Empty:
            yield None  # lets the worker notice Cancel
            continue
        if item is None:
            break
        done, total, entry = item
        yield done / max(total, 1), (f"{done} of {total} image(s): {entry.get('key')} "
                                     f"{entry.get('status')}")
    thread.join()
    if "code" in result:
        result["record"] = load_record(Path(args.out) / "run.json")
    return result


class BatchPanel(QWidget):
    """Pick an images folder, a points file and an output folder; run the batch engine.

    Parameters
    ----------
    host : SSegWidget
        The dock widget (its backend choice, worker helpers and status line).
    """

    def __init__(self, host):
        super().__init__()
        self.host = host
        self.images_edit = QLineEdit()
        self.points_edit = QLineEdit()
        self.out_edit = QLineEdit()
        self.images_edit.setPlaceholderText("folder of images")
        self.points_edit.setPlaceholderText("CoralNet CSV (Name,Row,Column,Label) or JSON")
        self.out_edit.setPlaceholderText("output folder")
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(1, max(1, os.cpu_count() or 1))
        self.workers_spin.setToolTip("1: one image after another in napari's process; N > 1: a "
                                     "local Dask cluster of N worker processes")
        self.resume_check = QCheckBox("Resume")
        self.resume_check.setToolTip("Keep images already done in the output folder (run.json) "
                                     "with unchanged inputs; redo the rest")
        self.overwrite_check = QCheckBox("Overwrite")
        self.run_btn = QPushButton("Run on folder")
        lay = QFormLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for label, edit, pick in (("Images", self.images_edit, self._pick_images),
                                  ("Points", self.points_edit, self._pick_points),
                                  ("Output", self.out_edit, self._pick_out)):
            row = QHBoxLayout()
            row.addWidget(edit)
            btn = QPushButton("...")
            btn.setMaximumWidth(30)
            btn.clicked.connect(pick)
            row.addWidget(btn)
            lay.addRow(label, row)
        opts = QHBoxLayout()
        opts.addWidget(self.workers_spin)
        opts.addWidget(self.resume_check)
        opts.addWidget(self.overwrite_check)
        lay.addRow("Workers", opts)
        lay.addRow(self.run_btn)
        self.run_btn.clicked.connect(self.run)
        self.last_result: dict | None = None

    # ---------------------------------------------------------------- pickers
    def _pick_images(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder of images", self.images_edit.text())
        if d:
            self.images_edit.setText(d)

    def _pick_points(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Points file", self.points_edit.text(),
                                           "Points (*.csv *.json);;All files (*)")
        if f:
            self.points_edit.setText(f)

    def _pick_out(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Output folder", self.out_edit.text())
        if d:
            self.out_edit.setText(d)

    # ---------------------------------------------------------------- run
    def argv(self) -> list[str]:
        """The ``napari-sseg expand`` arguments of the current settings."""
        argv = ["expand", self.images_edit.text().strip(), "--points",
                self.points_edit.text().strip(), "--out", self.out_edit.text().strip(), "-q",
                "--workers", str(self.workers_spin.value())]
        backend, model = self.host.backend_combo.currentData() or ("superpixel", None)
        argv += ["--backend", "sam2" if backend == "sam2" else "superpixel"]
        if backend == "sam2" and model:
            argv += ["--model", model]
        if self.resume_check.isChecked():
            argv.append("--resume")
        if self.overwrite_check.isChecked():
            argv.append("--overwrite")
        return argv

    def run(self) -> None:
        """Plan the run on the main thread (argument checks only) and start the worker."""
        from napari.qt.threading import create_worker

        from ..cli import build_parser

        if self.host.is_busy():
            self.host._notify_error("SSeg is busy; cancel the running job first")
            return
        missing = [n for n, e in (("images folder", self.images_edit),
                                  ("points file", self.points_edit),
                                  ("output folder", self.out_edit)) if not e.text().strip()]
        if missing:
            self.host._notify_error(f"Run on folder: choose the {', '.join(missing)}")
            return
        try:
            args = build_parser().parse_args(self.argv())
        except SystemExit:
            self.host._notify_error("Run on folder: invalid settings")
            return
        worker = create_worker(batch_steps, args, _start_thread=False,
                               _connect={"errored": self.host._on_error})
        args.cancel = lambda: worker.abort_requested
        worker.yielded.connect(self._on_step)
        worker.returned.connect(self._on_done)
        self.run_btn.setEnabled(False)
        worker.finished.connect(lambda: self.run_btn.setEnabled(True))
        self.host._start(worker, "running on folder")

    def _on_step(self, value) -> None:
        if value is not None:
            self.host._on_progress(value)

    def _on_done(self, result: dict) -> None:
        self.last_result = result
        if "error" in result:
            self.host._notify_error(f"Run on folder: {result['error']}")
            return
        rec = result.get("record") or {}
        s = rec.get("summary", {})
        out = self.out_edit.text().strip()
        text = (f"run on folder {rec.get('state', 'ended')}: {s.get('ok', 0)} ok, "
                f"{s.get('failed', 0)} failed, {s.get('skipped', 0)} skipped -> {out}")
        if s.get("failed"):
            first = next(e for e in rec["images"] if e["status"] == "failed")
            self.host._notify_error(f"{text}; {first['key']}: {first.get('error')}")
        else:
            self.host._set_status(text)
