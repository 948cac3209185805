"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

An interrupted run therefore never leaves a half-written PNG, JSON or CSV behind: the destination
either keeps its old content (or does not exist) or holds the complete new file. A process killed
mid-write (``kill -9``, power loss) can leave its temporary file, named ``.<name>.sseg-XXXXXXXX.tmp``
beside ``<name>``; :func:`remove_stray_temp_files` removes those of given outputs (the batch engine
calls it at the start of every run). Files that belong together (a mask and its overlay) are
written inside :func:`atomic_group`: they appear together or not at all. A failed write raises an
``OSError`` whose message names the file.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "stray_temp_files", "remove_stray_temp_files", "atomic_group", "remove_outputs"]

#: infix of the temporary files: ``.<name>.sseg-XXXXXXXX.tmp``
TEMP_INFIX = ".sseg-"

# (temporary, destination) pairs of the innermost open atomic_group, or None
_GROUP: contextvars.ContextVar[list | None] = contextvars.ContextVar("_GROUP", default=None)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination file. Its folder must exist.
    mode : {'wb', 'w'}
        Binary or text mode.
    **kwargs
        Passed to :func:`open` (for example ``encoding`` or ``newline`` in text mode).

    Yields
    ------
    file object
        Write to it; when the ``with`` block ends without an exception the data are flushed,
        synced and moved onto ``path``. On an exception the temporary file is removed and
        ``path`` is left untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports modes 'wb' and 'w', got {mode!r}")
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_INFIX}", suffix=".tmp",
                                   dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from exc
    os.close(fd)
    group = _GROUP.get()
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files: give the output the permissions a plain open() would
        os.chmod(tmp, _mode_for(path))
        if group is not None:
            group.append((tmp, path))  # moved into place when the whole group is written
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and str(path) not in str(exc):
            raise _naming(exc, path) from exc
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """The same kind of ``OSError`` (same errno) with a message that names ``path``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno:
        return OSError(exc.errno, f"cannot write {path}: {reason}")
    return OSError(f"cannot write {path}: {reason}")


@contextlib.contextmanager
def atomic_group(*, discard=()) -> Iterator[None]:
    """Files written with :func:`atomic_open` inside the block appear together or not at all.

    Each file is written to its temporary file as usual; when the block ends without an
    exception all of them are moved into place (one ``os.replace`` each, after every file has
    been written and synced), so a full disk or an error while writing the second file leaves
    neither. On an exception the temporary files are removed, and so are the files named in
    ``discard`` (the previous outputs of the same task, which would otherwise look current).

    Parameters
    ----------
    discard : sequence of path
        Destinations to remove when the block fails.
    """
    staged: list[tuple[str, Path]] = []
    token = _GROUP.set(staged)
    try:
        yield
    except BaseException:
        _GROUP.reset(token)
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        remove_outputs(discard)
        raise
    _GROUP.reset(token)
    for i, (tmp, path) in enumerate(staged):
        try:
            os.replace(tmp, path)
        except OSError as exc:  # pragma: no cover - a rename within one folder rarely fails
            for t, _ in staged[i:]:
                with contextlib.suppress(OSError):
                    os.unlink(t)
            remove_outputs([p for _, p in staged[:i]] + list(discard))
            raise _naming(exc, path) from exc


def remove_outputs(paths) -> list[Path]:
    """Remove those of ``paths`` that exist (the stale outputs of a task that failed); returns
    the removed ones. A file that cannot be removed is left as it is."""
    removed = []
    for p in paths:
        p = Path(p)
        try:
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def stray_temp_files(folder: str | os.PathLike, names) -> list[Path]:
    """Temporary files that :func:`atomic_open` left for ``names`` (relative to ``folder``).

    Matches ``.<name>.sseg-XXXXXXXX.tmp`` and the older ``.<name>.XXXXXXXX.tmp``: only files
    that a killed writer of exactly these outputs can have left.
    """
    import glob
    import re

    folder = Path(folder)
    found: list[Path] = []
    by_parent: dict[Path, set[str]] = {}
    for name in names:
        p = folder / name
        by_parent.setdefault(p.parent, set()).add(p.name)
    for parent, base_names in by_parent.items():
        if not parent.is_dir():
            continue
        for base in base_names:
            pat = re.compile(re.escape(f".{base}.") + r"(sseg-)?[A-Za-z0-9_]{8}\.tmp")
            for cand in parent.glob(f".{glob.escape(base)}.*.tmp"):
                if pat.fullmatch(cand.name) and cand.is_file():
                    found.append(cand)
    return sorted(found)


def remove_stray_temp_files(folder: str | os.PathLike, names) -> list[Path]:
    """Remove :func:`stray_temp_files` of ``names`` in ``folder``; returns the removed paths.

    Call it only when no other process is writing those outputs.
    """
    removed = []
    for p in stray_temp_files(folder, names):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


def _mode_for(path: Path) -> int:
    """Mode of the file being replaced, else 0o666 minus the process umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (NaN written as ``null``) to ``path`` atomically."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths and non-finite floats to plain JSON values."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj
