"""Checks of a run's inputs and outputs before any image is processed.

Every front end (the command line's serial loop, the batch engine's tasks, scripts) calls these
before it starts, so that a problem that would fail every image, or silently give a wrong
result, stops the run at once with one message naming the file, line and column, instead of
one failure per image after the work was done. Each check raises :class:`InputError`; the
checks that look at many things (:func:`check_points`) collect every problem they find and
say each once.

Nothing here imports napari, Qt, dask or torch.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "InputError",
    "PNG_MAX_ID",
    "check_not_inputs",
    "check_writable",
    "check_points",
    "check_class_ids",
    "check_same_pixel",
    "check_seeds",
    "nfc",
]

#: Largest class id of a 16-bit PNG mask, the format the command line writes.
PNG_MAX_ID = 65535


class InputError(ValueError):
    """Input that stops a whole run before any image is processed (exit code 2 on the
    command line); the message names the file, and the line and column where there is one."""


def nfc(name: str) -> str:
    """``name`` in Unicode NFC (macOS writes file names decomposed, NFD)."""
    return unicodedata.normalize("NFC", name)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_not_inputs(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike],
    *,
    out_dir: str | os.PathLike | None = None,
    images: Iterable[str | os.PathLike] | None = None,
    option: str = "--out",
    example: str = "suggestions.csv",
) -> None:
    """Refuse outputs that are inputs, and an output folder that holds the input images.

    Parameters
    ----------
    outputs : paths
        Files the run would write.
    inputs : paths
        Files the run reads (images, masks, points and classes files).
    out_dir : path, optional
        The output folder: refused when it holds any of ``images`` (the outputs would be
        written among them, over any of the same name, and a later run over that folder would
        read the masks as images).
    images : paths, optional
        The input images and masks (default: all ``inputs``).
    option : str
        The option that names the output, for the message.
    example : str
        A file name to suggest when an output names a folder.

    Raises
    ------
    InputError
    """
    inputs = [Path(p) for p in inputs]
    if out_dir is not None:
        out = Path(out_dir)
        if out.exists():
            folders = {Path(p).parent for p in (inputs if images is None else images)}
            holders = sorted(str(d) for d in folders if _same(d, out))
            if holders:
                raise InputError(
                    f"{option} {out} is the folder of the input images ({holders[0]}): the "
                    f"outputs would be written among them (over those of the same name) and a "
                    f"later run would read them as inputs; choose another folder, for example "
                    f"{option} {out / 'masks'}"
                )
    by_name: dict[str, list[Path]] = {}
    for p in inputs:
        by_name.setdefault(p.name, []).append(p)
    for o in outputs:
        o = Path(o)
        if o.is_dir():
            raise InputError(f"{option} {o} is a folder; give a file name, for example "
                             f"{o / example}")
        for p in by_name.get(o.name, []):
            if _same(o, p):
                raise InputError(f"{option} {o} would overwrite the input {p}; choose another "
                                 f"output name")


def check_writable(folder: str | os.PathLike, *, option: str = "--out") -> None:
    """Refuse an output folder (or the folder it would be created in) that cannot be written.

    Uses ``os.access`` and, for a folder that exists, creates and removes a temporary file (the
    only test that also sees read-only file systems, and that works for the root user).

    Raises
    ------
    InputError
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {folder} exists and is not a folder")
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{option} {folder}: {probe} is a file, so the folder cannot be created")
    what = folder if probe == folder else f"{probe} (to create {folder} in it)"
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{option}: cannot write to {what}: permission denied; choose another "
                         f"folder or change its permissions")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sseg-write-test-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"{option}: cannot write to {what}: "
                         f"{exc.strerror or exc}") from None


def _lines(sources: Sequence[str], index: np.ndarray, limit: int = 5) -> str:
    shown = [sources[i] if i < len(sources) else f"point #{i}" for i in index[:limit]]
    more = f" and {len(index) - limit} more" if len(index) > limit else ""
    return ", ".join(shown) + more


def check_class_ids(
    ids_by_place: dict[str, Iterable[int]],
    *,
    limit: int = PNG_MAX_ID,
    fmt: str = "16-bit PNG masks",
) -> None:
    """Refuse class ids that do not fit the output format.

    Parameters
    ----------
    ids_by_place : dict of str to ints
        Where the ids come from (``"points.csv: line 3"``, ``"classes.csv"``) -> ids there.
    limit : int
        Largest id the output holds.
    fmt : str
        The output format, in words.

    Raises
    ------
    InputError
        Naming every place with an id above ``limit`` and saying how to renumber.
    """
    bad = []
    for where, ids in ids_by_place.items():
        big = sorted({int(i) for i in ids if int(i) > limit})
        if big:
            bad.append(f"{where} ({', '.join(map(str, big[:5]))})")
    if bad:
        raise InputError(
            f"class id(s) above {limit} do not fit the {fmt} that are written: "
            f"{'; '.join(bad[:10])}. A class id is the pixel value of its class in the mask: "
            f"renumber the classes to 0..{limit}, or write class names in the label column and "
            f"give --classes FILE mapping each name to a small id"
        )


def check_same_pixel(points, sources: Sequence[str], where: str) -> None:
    """Refuse points of different classes on the same pixel (one of them would silently win).

    Parameters
    ----------
    points : PointSet
    sources : list of str
        Where each point came from (``"line 12"``).
    where : str
        Names the points file and image.

    Raises
    ------
    InputError
        Naming each pixel, its lines and their classes (at most 5, then a count).
    """
    if len(points) < 2:
        return
    rows, cols = points.pixel_indices()
    labels = points.labels
    order = np.lexsort((labels, cols, rows))
    r, c, lab = rows[order], cols[order], labels[order]
    same = (r[1:] == r[:-1]) & (c[1:] == c[:-1])
    clash = same & (lab[1:] != lab[:-1])
    if not clash.any():
        return
    starts = np.flatnonzero(np.r_[True, ~same])  # first point of each pixel in sorted order
    group = np.cumsum(np.r_[True, ~same]) - 1
    bad_groups = np.unique(group[1:][clash])
    parts = []
    for g in bad_groups[:5]:
        members = order[starts[g]:(starts[g + 1] if g + 1 < len(starts) else len(order))]
        desc = ", ".join(
            f"{sources[i] if i < len(sources) else f'point #{i}'} (class {int(labels[i])})"
            for i in members[:4])
        parts.append(f"pixel (row {int(rows[members[0]])}, col {int(cols[members[0]])}): {desc}")
    more = f"; and {len(bad_groups) - 5} more pixel(s)" if len(bad_groups) > 5 else ""
    raise InputError(
        f"{where}: points of different classes fall on the same pixel, so one would overwrite "
        f"the other: {'; '.join(parts)}{more}. Remove or correct one point of each pair"
    )


def check_points(pf, points_path: str | os.PathLike, *, dims: int = 2) -> None:
    """Refuse a points file that has no points, or more coordinate axes than the images.

    Parameters
    ----------
    pf : PointsFile
        As read by :func:`napari_sseg.io.read_points_file`.
    points_path : path
    dims : int
        Coordinate axes of the images (2 for 2D images).

    Raises
    ------
    InputError
    """
    total = sum(len(ps) for ps in pf.points.values())
    if total == 0:
        kind = "a header but no points" if pf.format != "json" else "no points"
        raise InputError(f"{points_path}: the points file holds {kind}; add the points (for "
                         f"a CSV one per line under the header)")
    ndim = getattr(pf, "ndim", 2)
    if ndim > dims:
        axes = ", ".join(f"axis-{i}" for i in range(ndim))
        raise InputError(
            f"{points_path}: the napari points file has {ndim} coordinate axes ({axes}: plane, "
            f"row, column of a stack), but the images are {dims}D; napari-sseg will not guess "
            f"which plane is meant: export the points of a 2D layer (columns axis-0 = row, "
            f"axis-1 = column) for a 2D image"
        )


def check_seeds(seeds: Iterable[int], option: str) -> None:
    """Refuse negative seeds, naming the option.

    Raises
    ------
    InputError
    """
    bad = [int(s) for s in seeds if int(s) < 0]
    if bad:
        raise InputError(f"{option} {' '.join(map(str, bad))}: seeds must be integers of 0 or "
                         f"more")
