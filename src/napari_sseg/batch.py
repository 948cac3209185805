"""One batch engine for every front end: a run is a list of per-image tasks.

The CLI (``expand``, ``simulate``, and the commands that follow them), the napari widget's
*Run on folder...* and your own scripts all run batches through :func:`run_batch`. It executes
the tasks serially in this process (the default: Dask is not even imported), on a local Dask
cluster of single-threaded worker processes (``workers=N``), or on an existing Dask cluster
(``scheduler="tcp://host:8786"``: ``dask scheduler`` / ``dask worker``, dask-jobqueue on SLURM).
Every output is the same whatever the runner: a task's result depends only on its inputs (and
the seed among them), and each task runs with BLAS/OpenMP thread pools limited to one thread.

Writing a task
--------------
A task function lives in a library module (importable on a Dask worker; it must not need the
client's state)::

    def my_task(inputs: dict, out_dir: pathlib.Path) -> dict:
        image = read_image(inputs["image"])           # it reads its own inputs (paths, not arrays)
        ...
        write_label_image(out_dir / inputs["out"], labels)   # atomic writes into out_dir
        return {"method": "superpixel"}               # extra fields for its entry in run.json

``inputs`` is a JSON-able dict (paths as strings, settings; a relative path is relative to
the client's working folder, which a worker enters for the task when it exists on the worker's
machine; give absolute paths on a shared file system). The function writes its outputs
(the relative names declared in :attr:`Task.outputs`, or more that it lists in an ``"outputs"``
field of its return value) with the atomic writers of :mod:`napari_sseg.io` into ``out_dir``,
and raises an exception with a clear message (naming the file and what is wrong) on failure.
Input keys that start with ``_`` reach the function but are left out of the task's digest (for
example the line numbers of the points, used only in error messages). Functions that take long
may accept a third argument, ``report``: a callable taking a short status string (``report``
is only passed when the signature has it).

A task module may list the heavy modules its functions import lazily in ``WORKER_IMPORTS``
(module names, never torch or Qt): a local cluster that forks its workers imports them first,
so that the workers inherit them.

Describe each image as a :class:`Task`::

    Task(key="a.png", func="napari_sseg.tasks:expand_image", inputs={...},
         outputs=("a.png", "a_overlay.png"), files=("/data/a.png",), info={"points": 25})

and run them::

    record = run_batch(tasks, out_dir, record={"command": "expand", "settings": {...}},
                       workers=2, resume=True, progress=callback, cancel=event)

The run record
--------------
``out_dir/run.json`` (``record_name``) is written atomically before the first task, then as
each task ends, then at the end. It holds the caller's fields (``record``: command, settings,
...), ``engine`` (runner, workers, scheduler, dashboard link, who wrote the outputs:
``"workers"`` when the output folder is shared with them, ``"client"`` when the workers
returned the files' bytes and this process wrote them), ``state`` (``running``, ``finished``,
``interrupted``, ``cancelled``), ``images`` (one entry per task, in task order: ``key``,
``status`` in ``pending``/``ok``/``failed``/``skipped``/``cancelled``, ``digest`` of the task's
inputs, ``outputs`` as ``[{"path", "size", "sha256"}]`` measured when written, ``seconds``,
``peak_rss_mb`` (the task's peak resident memory where the OS tells it, else the worker
process's), ``worker``, ``error`` and ``traceback`` for failures, the task's :attr:`Task.info`
and the fields its function returned), ``workers`` (each worker's task count and peak memory)
and ``summary`` (count per status).

Resume
------
With ``resume=True`` a task is skipped when the previous record has it ``ok`` with the same
input digest (function, JSON inputs, size and modification time of its input ``files``, package
version) and every one of its outputs exists with the recorded size and SHA-256; its entry is
kept (``"resumed": true``). Everything else is redone. Any run (resumed or not) first removes
the stray temporary files that the atomic writer left for the run's outputs when a process was
killed (``.<name>.sseg-XXXXXXXX.tmp``, see :func:`napari_sseg.io.atomic.stray_temp_files`).

Failures
--------
A task that raises is recorded ``failed`` with the message, and the batch goes on. On Dask, a
task whose worker process dies (out of memory, a segfault, a kill) is recorded ``failed`` with
the reason (Dask's ``KilledWorker``) and the rest go on; the local cluster's nanny restarts the
worker. In this process (``workers=1``) a crash ends the run: rerun with ``resume=True``.
Ctrl-C writes the record (``state: interrupted``) and re-raises ``KeyboardInterrupt``; a
``cancel`` callable (or ``threading.Event``) that turns true stops the run between tasks and
marks the rest ``cancelled``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import inspect
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "BatchError",
    "Task",
    "execute_task",
    "file_digest",
    "load_record",
    "loopback_cluster",
    "resumable",
    "run_batch",
    "task_digest",
]

#: status of a task entry in the record
STATUSES = ("pending", "ok", "failed", "skipped", "cancelled")

_MARKER_PREFIX = ".sseg-run-"


class BatchError(Exception):
    """A run that cannot start (bad tasks, no cluster at the address, an unusable record)."""


@dataclass(frozen=True)
class Task:
    """One unit of work of a run: normally one image with its settings.

    Parameters
    ----------
    key : str
        Unique within the run (for example the image's file name); the entry's ``key``.
    func : str
        ``"package.module:function"`` of the task function (see the module docstring).
    inputs : dict
        JSON-able inputs passed to the function. Keys starting with ``_`` are not digested.
    outputs : sequence of str
        Relative paths (``/``-separated) under the output folder that the task writes.
    files : sequence of str
        Input files whose size and modification time enter the digest (the image, its mask).
    info : dict
        JSON-able fields copied into the task's entry of the record (not digested).
    skip : str, optional
        When given the task is not run; its entry is ``skipped`` with this reason as ``warning``.
    """

    key: str
    func: str
    inputs: dict = field(default_factory=dict)
    outputs: Sequence[str] = ()
    files: Sequence[str] = ()
    info: dict = field(default_factory=dict)
    skip: str | None = None


# ----------------------------------------------------------------------------- digests


def file_digest(path: str | os.PathLike, *, chunk: int = 1 << 20) -> tuple[int, str]:
    """(size in bytes, hex SHA-256) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            size += len(block)
            h.update(block)
    return size, h.hexdigest()


def task_digest(task: Task) -> str:
    """Hex SHA-256 of what a task's result depends on.

    The function, its inputs (keys starting with ``_`` left out), the size and modification
    time of its input ``files`` and the package version. A changed points file changes the
    points in ``inputs``; a changed image changes its size or time.
    """
    from . import __version__

    stats = []
    for f in task.files:
        try:
            st = os.stat(f)
            stats.append([str(f), st.st_size, st.st_mtime_ns])
        except OSError:
            stats.append([str(f), None, None])
    payload = {
        "func": task.func,
        "inputs": {k: v for k, v in task.inputs.items() if not str(k).startswith("_")},
        "files": stats,
        "outputs": list(task.outputs),
        "version": __version__,
    }
    text = json.dumps(_jsonable(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(obj):
    from .io.atomic import _jsonable as conv

    return conv(obj)


# ----------------------------------------------------------------------------- the record


def load_record(path: str | os.PathLike) -> dict | None:
    """The run record at ``path``, or ``None`` when there is none or it cannot be read."""
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("images"), list) else None


def _outputs_intact(entry: dict, out_dir: Path) -> bool:
    outs = entry.get("outputs")
    if not isinstance(outs, list):
        return False
    for o in outs:
        if not isinstance(o, dict) or "path" not in o:
            return False
        p = out_dir / o["path"]
        try:
            if p.stat().st_size != o.get("size"):
                return False
            if file_digest(p)[1] != o.get("sha256"):
                return False
        except OSError:
            return False
    return True


def resumable(tasks: Sequence[Task], out_dir: str | os.PathLike, previous: dict | None
              ) -> dict[str, dict]:
    """Entries of ``previous`` (a record) that a resumed run keeps, by task key.

    A task is kept when its previous entry is ``ok``, its digest is unchanged and each of its
    outputs exists with the recorded size and SHA-256.
    """
    if not previous:
        return {}
    out_dir = Path(out_dir)
    old = {e.get("key"): e for e in previous.get("images", []) if isinstance(e, dict)}
    keep = {}
    for t in tasks:
        e = old.get(t.key)
        if (e and e.get("status") == "ok" and e.get("digest") == task_digest(t)
                and {o.get("path") for o in e.get("outputs", []) if isinstance(o, dict)}
                >= set(t.outputs)
                and _outputs_intact(e, out_dir)):
            keep[t.key] = e
    return keep


class _RecordWriter:
    """Writes the record atomically; skips writes that would come faster than it can write."""

    def __init__(self, path: Path):
        self.path = path
        self.last = 0.0
        self.cost = 0.0

    def write(self, record: dict, *, force: bool = False) -> None:
        from .io.atomic import atomic_write_json

        now = time.monotonic()
        if not force and now - self.last < 5 * self.cost:
            return
        atomic_write_json(self.path, record)
        self.last = time.monotonic()
        self.cost = self.last - now


def _summary(entries: list[dict]) -> dict:
    out = {s: 0 for s in ("ok", "failed", "skipped")}
    for e in entries:
        out[e["status"]] = out.get(e["status"], 0) + 1
    return {k: v for k, v in out.items() if v or k in ("ok", "failed", "skipped")}


def _workers_summary(entries: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for e in entries:
        w = e.get("worker")
        if not w or e.get("resumed"):
            continue
        s = out.setdefault(w, {"tasks": 0, "peak_rss_mb": 0.0})
        s["tasks"] += 1
        peak = e.get("worker_peak_rss_mb") or e.get("peak_rss_mb") or 0.0
        s["peak_rss_mb"] = max(s["peak_rss_mb"], peak)
    return out


# ----------------------------------------------------------------------------- on the worker


_SHARED: dict[tuple[str, str], bool] = {}


def _is_shared(out_dir: Path, marker: str | None) -> bool:
    """Whether this process sees the client's output folder (the marker file with its token)."""
    if marker is None:
        return True
    key = (str(out_dir), marker)
    if key not in _SHARED:
        try:
            _SHARED[key] = (out_dir / f"{_MARKER_PREFIX}{marker}").read_text() == marker
        except OSError:
            _SHARED[key] = False
    return _SHARED[key]


def _reset_peak() -> bool:
    """Reset the process's peak resident memory (Linux ``clear_refs``); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> tuple[float | None, float | None]:
    """(peak RSS since the last reset from /proc, process peak RSS from getrusage) in MB."""
    hwm = None
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024.0
                    break
    except OSError:
        pass
    try:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ru_mb = ru / (1024.0 * 1024.0) if sys.platform == "darwin" else ru / 1024.0
    except (ImportError, OSError):
        ru_mb = None
    return hwm, ru_mb


def _resolve(func: str) -> Callable:
    mod, _, name = func.partition(":")
    if not mod or not name:
        raise BatchError(f"task function {func!r} is not 'package.module:function'")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as exc:
        raise BatchError(f"cannot import task function {func!r}: {exc}") from exc


@contextlib.contextmanager
def _thread_limits(threads: int | None):
    if not threads:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        yield
        return
    with threadpool_limits(limits=int(threads)):
        yield


def execute_task(
    func: str,
    inputs: dict,
    out_dir: str,
    outputs: Sequence[str] = (),
    *,
    marker: str | None = None,
    threads: int | None = 1,
    report: Callable[[str], None] | None = None,
    cwd: str | None = None,
) -> dict:
    """Run one task function where this is called (this process or a Dask worker).

    Never raises for a failing task: returns ``{"status": "failed", "error", "traceback"}``.
    When the output folder is not visible here (``marker`` not found), the function writes
    into a temporary folder and the files' bytes come back under ``"files"`` for the client
    to write. ``cwd`` (the client's working folder) is entered for the task when it exists
    here, so that relative paths in the inputs mean what they meant to the client.

    Returns
    -------
    dict
        ``status``, ``seconds``, ``peak_rss_mb``, ``worker_peak_rss_mb``, ``worker``,
        ``written_by`` (``"worker"`` or ``"client"``), ``outputs`` (``[{"path", "size",
        "sha256"}]``), ``result`` (the function's fields) and, for returned outputs, ``files``.
    """
    t0 = time.perf_counter()
    c0 = time.process_time()
    exact = _reset_peak()
    target = Path(out_dir)
    shared = _is_shared(target, marker)
    tmp = None
    res: dict[str, Any] = {"worker": f"{socket.gethostname()}:{os.getpid()}",
                           "written_by": "worker" if shared else "client"}
    old_cwd = None
    if cwd and os.path.isdir(cwd) and os.getcwd() != cwd:  # one task at a time per worker
        old_cwd = os.getcwd()
        os.chdir(cwd)
    try:
        fn = _resolve(func)
        if not shared:
            tmp = tempfile.TemporaryDirectory(prefix="sseg-task-")
            target = Path(tmp.name)
        for rel in outputs:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {}
        if report is not None and "report" in inspect.signature(fn).parameters:
            kwargs["report"] = report
        with _thread_limits(threads):
            result = fn(dict(inputs), target, **kwargs) or {}
        if not isinstance(result, dict):
            raise BatchError(f"task function {func} returned {type(result).__name__}, "
                             f"not a dict of record fields")
        names = list(dict.fromkeys([*outputs, *(result.pop("outputs", None) or [])]))
        outs, files = [], {}
        for rel in names:
            p = target / rel
            if not p.is_file():
                raise BatchError(f"task function {func} did not write its output {rel}")
            size, sha = file_digest(p)
            outs.append({"path": str(rel), "size": size, "sha256": sha})
            if not shared:
                files[str(rel)] = p.read_bytes()
        res.update(status="ok", outputs=outs, result=_jsonable(result))
        if files:
            res["files"] = files
    except Exception as exc:  # noqa: BLE001 - one bad task never stops the batch
        res.update(status="failed", error=str(exc) or type(exc).__name__,
                   traceback="".join(traceback.format_exception(exc))[-4000:])
    finally:
        if tmp is not None:
            tmp.cleanup()
        if old_cwd is not None:
            os.chdir(old_cwd)
    hwm, ru = _peak_mb()
    res["seconds"] = round(time.perf_counter() - t0, 4)
    res["cpu_seconds"] = round(time.process_time() - c0, 4)
    res["peak_rss_mb"] = round(hwm if exact and hwm is not None else (ru or 0.0), 1)
    res["worker_peak_rss_mb"] = round(ru, 1) if ru is not None else None
    return res


# ----------------------------------------------------------------------------- the client


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _write_returned(out_dir: Path, res: dict) -> None:
    """Write the files a worker returned (its folder was not shared) atomically here."""
    from .io.atomic import atomic_write_bytes

    for o in res.get("outputs", []):
        data = res["files"][o["path"]]
        p = out_dir / o["path"]
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(p, data)
        size, sha = file_digest(p)
        if (size, sha) != (o["size"], o["sha256"]):
            raise OSError(f"{p}: written file differs from the worker's ({size} bytes)")


def run_batch(
    tasks: Iterable[Task],
    out_dir: str | os.PathLike,
    *,
    record: dict | None = None,
    record_name: str = "run.json",
    workers: int = 1,
    scheduler: str | None = None,
    resume: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
    status: Callable[[str, str], None] | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
    outputs_via: str = "auto",
    threads: int = 1,
    force_dask: bool = False,
    memory_limit: str | float | None = "auto",
    dashboard: bool = True,
    start_method: str | None = None,
    timeout: float = 30.0,
) -> dict:
    """Run tasks and keep their record in ``out_dir/record_name``.

    Parameters
    ----------
    tasks : iterable of Task
        Keys must be unique.
    out_dir : path
        Output folder (created). Task outputs are relative to it.
    record : dict, optional
        Fields of the run record set by the caller (``command``, ``settings``, ...).
    record_name : str
        File name of the record in ``out_dir`` (``None`` or ``""``: keep it in memory only).
    workers : int
        1 (default): run in this process, no Dask. N > 1: a local Dask cluster of N
        single-threaded worker processes.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``); ``workers`` is then ignored.
    resume : bool
        Skip tasks finished by a previous run with the same inputs and intact outputs.
    progress : callable, optional
        ``progress(done, total, entry)`` after each task ends (and for each task a resumed run
        keeps), in this process.
    status : callable, optional
        ``status(key, message)`` while a task runs in this process (serial runs only; task
        functions that accept ``report`` send it).
    cancel : callable or threading.Event, optional
        Checked between tasks (and every half second on Dask); when true the rest are cancelled.
    outputs_via : {'auto', 'shared', 'client'}
        Where Dask workers write: ``auto`` detects whether they see ``out_dir`` (a marker file);
        ``client`` makes them return the bytes for this process to write.
    threads : int
        BLAS/OpenMP threads per task (1 keeps results identical across runners).
    force_dask : bool
        Use a local Dask cluster even for ``workers=1`` (benchmarks, crash isolation).
    memory_limit : str or float, optional
        Per-worker memory limit of the local cluster (Dask's meaning; ``"auto"`` splits RAM).
    dashboard : bool
        Serve the Dask dashboard on a free port when bokeh is installed.
    start_method : str, optional
        Worker start method of the local cluster: default ``fork`` on Linux when neither torch
        nor a Qt application is loaded here (starts in well under a second), else ``spawn``.
    timeout : float
        Seconds to wait for a cluster or scheduler to answer.

    Returns
    -------
    dict
        The run record (also written to ``out_dir/record_name``).

    Raises
    ------
    BatchError
        Duplicate task keys, an unknown ``outputs_via`` or no scheduler at the address.
    KeyboardInterrupt
        After the record was written with ``state: interrupted``.
    """
    tasks = list(tasks)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise BatchError(f"duplicate task keys: {', '.join(map(str, dup[:5]))}")
    if outputs_via not in ("auto", "shared", "client"):
        raise BatchError(f"outputs_via must be 'auto', 'shared' or 'client', not {outputs_via!r}")
    if workers < 1:
        raise BatchError(f"workers must be at least 1, got {workers}")
    from . import __version__
    from .io.atomic import remove_outputs, remove_stray_temp_files

    out_dir = Path(out_dir).absolute()  # workers elsewhere need no relative path
    out_dir.mkdir(parents=True, exist_ok=True)
    rec_path = out_dir / record_name if record_name else None
    writer = _RecordWriter(rec_path) if rec_path else None

    # stray temporary files of a killed run (ours: the outputs and the record)
    names = [o for t in tasks for o in t.outputs] + ([record_name] if record_name else [])
    removed = remove_stray_temp_files(out_dir, names)
    for stale in out_dir.glob(f"{_MARKER_PREFIX}*"):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed.append(stale)
    if removed:
        log.info("removed %d stray temporary file(s) of an interrupted run in %s", len(removed),
                 out_dir)

    previous = load_record(rec_path) if (resume and rec_path) else None
    kept = resumable(tasks, out_dir, previous)
    dask_mode = scheduler is not None or workers > 1 or force_dask
    engine = {
        "runner": "dask-scheduler" if scheduler else "dask-local" if dask_mode else "serial",
        "workers": None if scheduler else workers,
        "scheduler": scheduler,
        "threads_per_task": threads,
        "outputs_written_by": "this process" if not dask_mode else None,
    }
    entries: list[dict] = []
    for t in tasks:
        if t.key in kept:
            e = dict(kept[t.key])
            e["resumed"] = True
        else:
            e = {"key": t.key, **_jsonable(t.info), "status": "pending",
                 "digest": task_digest(t)}
            if t.skip is not None:
                e.update(status="skipped", warning=t.skip)
        entries.append(e)
    started = time.time()
    rec: dict[str, Any] = {
        "version": __version__,
        **_jsonable(record or {}),
        "engine": engine,
        "state": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "finished": None,
        "seconds": 0.0,
        "resumed": bool(resume and previous is not None),
        "stray_files_removed": [str(p.relative_to(out_dir)) for p in removed],
        "images": entries,
        "workers": {},
        "summary": {},
    }

    total = len(tasks)
    done = 0

    def refresh(force: bool = False) -> None:
        rec["seconds"] = round(time.time() - started, 3)
        rec["summary"] = _summary(entries)
        rec["workers"] = _workers_summary(entries)
        if writer:
            writer.write(rec, force=force)

    def finish(i: int, res: dict) -> None:
        nonlocal done
        e = entries[i]
        extra = res.pop("result", None) or {}
        res.pop("files", None)
        for k, v in extra.items():  # the task's own fields first; the engine's win
            if k not in ("key", "status", "digest"):
                e[k] = v
        e.update(res)
        if e["status"] == "failed":
            log.info("%s: failed: %s", e["key"], e.get("error"))
            log.debug("%s", e.get("traceback", ""))
            # an earlier run's outputs of this task would look current beside "failed"
            remove_outputs([out_dir / rel for rel in tasks[i].outputs])
        done += 1
        refresh()
        if progress is not None:
            progress(done, total, e)

    if not (dask_mode and _todo_any(entries)):
        refresh(force=True)  # on Dask: once the cluster answers (no record when none does)
    kept_or_skipped = [i for i, e in enumerate(entries) if e["status"] != "pending"]
    if kept:
        log.info("resuming: %d of %d task(s) already done with unchanged inputs and outputs; "
                 "%d to run", len(kept), total, total - len(kept_or_skipped))
    for i in kept_or_skipped:
        done += 1
        if progress is not None:
            progress(done, total, entries[i])
    todo = [i for i, e in enumerate(entries) if e["status"] == "pending"]

    state = "finished"
    try:
        if not todo:
            pass
        elif not dask_mode:
            for i in todo:
                if _cancelled(cancel):
                    state = "cancelled"
                    break
                t = tasks[i]
                for rel in t.outputs:
                    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                report = None if status is None else functools.partial(status, t.key)
                finish(i, execute_task(t.func, t.inputs, str(out_dir), list(t.outputs),
                                       threads=threads, report=report))
        else:
            state = _run_dask(tasks, todo, out_dir, finish, engine,
                              ready=lambda: refresh(force=True), scheduler=scheduler,
                              workers=workers, cancel=cancel, outputs_via=outputs_via,
                              threads=threads, memory_limit=memory_limit, dashboard=dashboard,
                              start_method=start_method, timeout=timeout)
    except KeyboardInterrupt:
        rec["state"] = "interrupted"
        rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        refresh(force=True)
        raise
    if state == "cancelled":
        for e in entries:
            if e["status"] == "pending":
                e["status"] = "cancelled"
    rec["state"] = state
    rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    refresh(force=True)
    return rec


# ----------------------------------------------------------------------------- Dask runners


@contextlib.contextmanager
def loopback_cluster(folder: str | os.PathLike, *, workers: int = 2, timeout: float = 120.0):
    """A ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes on
    127.0.0.1, started as separate processes (as on a real cluster); yields the address.

    For trying ``--scheduler`` on one machine, tests and benchmarks. Their log goes to
    ``folder/dask.log``; every process is stopped when the block ends.
    """
    import signal
    import subprocess

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sfile = folder / "scheduler.json"
    sfile.unlink(missing_ok=True)
    procs: list[subprocess.Popen] = []
    with open(folder / "dask.log", "w") as logf:

        def start(*args):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", *map(str, args)], stdout=logf, stderr=subprocess.STDOUT,
                cwd=folder, start_new_session=True))

        try:
            start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                  "--no-dashboard", "--scheduler-file", sfile)
            deadline = time.monotonic() + timeout
            while not sfile.exists():
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise BatchError(f"the Dask scheduler did not start; see {logf.name}")
                time.sleep(0.1)
            address = json.loads(sfile.read_text())["address"]
            for _ in range(workers):
                start("distributed.cli.dask_worker", address, "--nthreads", "1", "--host",
                      "127.0.0.1", "--no-dashboard", "--local-directory", folder)
            from distributed import Client

            with Client(address, timeout=timeout) as client:
                client.wait_for_workers(workers, timeout=timeout)
            yield address
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)


def _preload(funcs: Iterable[str]) -> None:
    """Import the task modules and their ``WORKER_IMPORTS`` here, before forking workers.

    Forked workers then inherit them instead of each importing them on its first task (about
    1-2 CPU seconds per worker for the expansion's scipy / scikit-image stack).
    """
    for mod_name in sorted({f.partition(":")[0] for f in funcs}):
        with contextlib.suppress(ImportError):
            mod = importlib.import_module(mod_name)
            for name in getattr(mod, "WORKER_IMPORTS", ()):
                with contextlib.suppress(ImportError):
                    importlib.import_module(name)


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _qt_app_running() -> bool:
    for binding in ("PyQt5", "PyQt6", "PySide2", "PySide6"):
        core = sys.modules.get(f"{binding}.QtCore")
        if core is not None and core.QCoreApplication.instance() is not None:
            return True
    return False


def _default_start_method() -> str:
    """``fork`` on Linux (workers start in well under a second, inheriting the imports) unless
    this process holds torch (its thread pools, CUDA) or a running Qt application (napari),
    which are unsafe to fork."""
    if sys.platform.startswith("linux") and "torch" not in sys.modules and not _qt_app_running():
        return "fork"
    return "spawn"


def _todo_any(entries: list[dict]) -> bool:
    return any(e["status"] == "pending" for e in entries)


def _run_dask(tasks, todo, out_dir: Path, finish, engine: dict, *, ready, scheduler, workers,
              cancel, outputs_via, threads, memory_limit, dashboard, start_method,
              timeout) -> str:
    """Run the tasks ``todo`` on Dask; returns the final state (``finished``/``cancelled``).

    ``ready()`` is called once the cluster answers, before the first task is submitted.
    """
    import dask
    from distributed import Client, wait

    cluster = None
    marker = None
    board = False
    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise BatchError(f"no Dask scheduler answered at {scheduler}: {exc}") from exc
            stack.callback(client.close)
        else:
            from distributed import LocalCluster

            method = start_method or _default_start_method()
            if method == "fork":
                _preload(tasks[i].func for i in todo)
            board = dashboard and _has_bokeh()
            cfg = {
                "distributed.worker.multiprocessing-method": method,
                # a task whose worker dies twice fails; a bystander on a dying worker is retried
                "distributed.scheduler.allowed-failures": 1,
                # one task at a time per single-threaded worker (no bystanders queued on it)
                "distributed.scheduler.worker-saturation": 1.0,
                # the statistical profiler samples every task's stack: ~15% CPU on these tasks
                "distributed.worker.profile.enabled": False,
                # housekeeping timers: by default an idle 2-worker cluster burns 0.12 CPU-s per
                # second (event-loop ticks every 20 ms, monitors); these make it 0.02
                "distributed.admin.tick.interval": "1s",
                "distributed.admin.system-monitor.interval": "2s",
                "distributed.admin.system-monitor.gil.enabled": False,
                "distributed.worker.memory.monitor-interval": "250ms",
            }
            stack.enter_context(dask.config.set(cfg))
            try:
                cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=":0", memory_limit=memory_limit,
                    scheduler_port=0,
                    # workers losing the scheduler at shutdown log tracebacks; the record says
                    # what failed (-v shows Dask's warnings)
                    silence_logs=logging.WARNING if log.isEnabledFor(logging.DEBUG)
                    else logging.CRITICAL,
                )
            except (OSError, TimeoutError, RuntimeError, ValueError) as exc:
                raise BatchError(f"cannot start a local Dask cluster of {workers} worker(s): "
                                 f"{exc}") from exc
            stack.callback(cluster.close)
            log.info("Dask: local cluster of %d single-threaded worker process(es) (%s)",
                     workers, method)
            client = Client(cluster, timeout=timeout)
            stack.callback(client.close)
            engine["start_method"] = method
        link = None
        with contextlib.suppress(Exception):
            engine["cluster_workers"] = len(client.nthreads())
            info = client.scheduler_info()
            # the scheduler's http server always answers; its dashboard needs bokeh there
            if "dashboard" in info.get("services", {}) and (
                    (cluster is not None and board) or client.run_on_scheduler(_has_bokeh)):
                link = client.dashboard_link
        engine["dashboard"] = link
        if link:
            log.info("Dask dashboard: %s", link)
        if scheduler:
            log.info("Dask scheduler %s with %s worker(s)", scheduler,
                     engine.get("cluster_workers", "?"))
            if not engine.get("cluster_workers"):
                log.warning("the scheduler at %s has no workers yet; tasks wait for one",
                            scheduler)
        if outputs_via != "client":
            marker = uuid.uuid4().hex
            mpath = out_dir / f"{_MARKER_PREFIX}{marker}"
            mpath.write_text(marker)
            stack.callback(lambda: mpath.unlink(missing_ok=True))
            if outputs_via == "shared":
                marker = None  # trust the caller: workers write into out_dir
        else:
            marker = "-"  # no such file anywhere: every worker returns its files

        ready()
        futures = {}
        for i in todo:
            t = tasks[i]
            fut = client.submit(execute_task, t.func, t.inputs, str(out_dir), list(t.outputs),
                                marker=marker, threads=threads, cwd=os.getcwd(), pure=False,
                                key=f"sseg-task-{i}-{uuid.uuid4().hex[:8]}")
            futures[fut] = i
        writers: set[str] = set()
        remaining = set(futures)
        state = "finished"
        try:
            while remaining:
                if _cancelled(cancel):
                    client.cancel(list(remaining))
                    state = "cancelled"
                    break
                try:
                    ready, _ = wait(list(remaining), timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                for fut in sorted(ready, key=lambda f: futures[f]):
                    remaining.discard(fut)
                    res = _collect(fut, out_dir)
                    if res.get("written_by"):
                        writers.add(res["written_by"])
                    finish(futures[fut], res)
        except KeyboardInterrupt:
            client.cancel(list(remaining))
            raise
        finally:
            engine["outputs_written_by"] = ("workers" if writers == {"worker"} else
                                            "client" if writers == {"client"} else
                                            "workers and client" if writers else None)
        return state


def _collect(fut, out_dir: Path) -> dict:
    """The result of a finished future, with failures of the worker itself as failed tasks."""
    try:
        res = fut.result()
    except Exception as exc:  # noqa: BLE001 - a dead worker, a lost cluster: a failed task
        from distributed import KilledWorker

        if isinstance(exc, KilledWorker):
            why = (f"its worker process died while running it (out of memory, a crash or a "
                   f"kill; Dask: {exc})")
        elif isinstance(exc, ImportError):
            why = (f"{type(exc).__name__} on the worker: {exc} (install napari-sseg in the "
                   f"workers' Python environment)")
        else:
            why = f"{type(exc).__name__}: {exc}"
        return {"status": "failed", "error": why}
    if res.get("status") == "ok" and res.get("files") is not None:
        try:
            _write_returned(out_dir, res)
        except OSError as exc:
            return {**res, "status": "failed", "files": None,
                    "error": f"cannot write the returned outputs into {out_dir}: {exc}"}
    return res
