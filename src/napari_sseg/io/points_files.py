"""Points files: CoralNet-style CSV, napari points CSV and the napari-sseg JSON schema.

Formats read by :func:`read_points_file` (column and key names match case-insensitively,
surrounding spaces are ignored, a UTF-8 byte-order mark is tolerated, the delimiter may be ``,``,
``;`` or a tab):

1. **CoralNet-style CSV**, one file for a whole folder: columns ``Name, Row, Column, Label``
   (other columns are ignored; ``Label code``, as in newer CoralNet exports, is accepted for
   ``Label``). ``Name`` is the image file name (a path is reduced to its file name when matched
   to images); ``Row`` and ``Column`` are 0-based pixel positions (row from the top, column
   from the left), as CoralNet uses since it moved from 1- to 0-indexing.
2. **napari points CSV**, one image: columns ``axis-0, axis-1`` plus ``label`` or ``class``
   (``label`` wins when both exist). napari's ``index`` column is ignored. With more axes
   (``axis-0 .. axis-2`` of a 3D layer) the last two axes are taken as (row, column) and the
   one before them as the plane (an integer z or t index; the points get ``planes``).
3. **JSON** (``*.json``)::

       {"version": 1,
        "classes": [{"id": 1, "name": "coral", "colour": "#ff7f0e"}],      # optional
        "images": {"img_001.png": [{"row": 10.5, "col": 20, "label": 1},
                                   {"row": 40, "col": 7, "label": "sand"}]}}

   ``"points": [...]`` instead of ``"images"`` holds the points of one image. ``col`` may be
   spelt ``column``; ``label`` may be spelt ``class``. Points of a stack carry an integer
   ``"plane"`` (z or t index): all points of a file, or none.

Labels: when every label is an integer the ids are kept as they are. Otherwise labels are class
names: they get their ids from the classes table (``classes=``, then the JSON's own
``classes``), and without any table ids 1..K in sorted name order. With a table, a name it does
not know is an error naming the lines.

Keys of the returned mapping are image file names, or ``None`` for the single-image formats.
"""

from __future__ import annotations

import csv
import difflib
import io as _io
import json
import logging
import math
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.points import PointSet
from .atomic import atomic_write_json, atomic_write_text
from .classes import ClassTable, classes_from_items, read_classes, read_text_file

__all__ = [
    "PointsFile",
    "PointsFileError",
    "MAX_CLASS_ID",
    "read_points_file",
    "write_points_csv",
    "write_napari_points_csv",
    "write_points_json",
    "write_unlabelled_points",
]

log = logging.getLogger(__name__)

CORALNET_COLUMNS = ("name", "row", "column", "label")
#: Largest class id a points file may use: the largest pixel value of any label image written
#: here (uint32 TIFF). The command line's PNG masks hold at most 65535.
MAX_CLASS_ID = 2**32 - 1
_AXIS = re.compile(r"^axis-(\d+)$")


class PointsFileError(ValueError):
    """A points file that cannot be used; the message names the file and line or entry."""


@dataclass
class PointsFile:
    """What :func:`read_points_file` found.

    Attributes
    ----------
    points : dict of str or None to PointSet
        Points per image file name (``None``: the file is for a single image), in file order.
    classes : ClassTable
        Names and colours of the classes (the classes file, the JSON's table, or the generated
        1..K table for textual labels).
    format : {'coralnet', 'napari', 'json'}
    textual : bool
        Whether the labels were class names mapped to ids.
    sources : dict of str or None to list of str
        Where each point of ``points[key]`` came from (``'line 12'`` for CSV,
        ``"images['a.png'][3]"`` for JSON), to name them in later errors (e.g. points outside
        the image).
    ndim : int
        Number of coordinate axes in the file (3 for a napari CSV of a 3D layer, whose
        ``points`` keep the last two axes), so that callers can refuse such a file for a 2D image.
    """

    points: dict[str | None, PointSet]
    classes: ClassTable = field(default_factory=ClassTable)
    format: str = "coralnet"
    textual: bool = False
    sources: dict[str | None, list[str]] = field(default_factory=dict)
    ndim: int = 2

    def describe(self, key: str | None, indices) -> str:
        """Locations in the file of the points ``indices`` of image ``key``."""
        src = self.sources.get(key, [])
        return ", ".join(src[int(i)] if int(i) < len(src) else f"#{int(i)}" for i in indices)


def read_points_file(
    path: str | os.PathLike, *, classes: ClassTable | str | os.PathLike | None = None
) -> PointsFile:
    """Read a CoralNet-style CSV, a napari points CSV or a JSON points file.

    Parameters
    ----------
    path : str or PathLike
        The points file (format from the ``.json`` suffix or the CSV header).
    classes : ClassTable or path, optional
        Class table (or a classes file to read) that maps textual labels to ids.

    Returns
    -------
    PointsFile

    Raises
    ------
    PointsFileError
        Naming the file and line (CSV) or entry (JSON): missing, misspelt (with the closest
        match) or duplicated columns, a stray quote that merges lines into one field,
        non-numeric or NaN coordinates, empty labels, negative ids or ids above
        :data:`MAX_CLASS_ID`, Unicode that is not UTF-8, class names the given table does not
        know. Never another exception type.
    ClassesFileError
        If ``classes`` is a path to a bad classes file.
    """
    path = Path(path)
    if classes is not None and not isinstance(classes, ClassTable):
        classes = read_classes(classes)
    text = read_text_file(path, "points file", PointsFileError)
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _read_json(path, text, classes)
    return _read_csv(path, text, classes)


# ----------------------------------------------------------------------------------------- CSV


def _read_csv(path: Path, text: str, classes: ClassTable | None) -> PointsFile:
    if not text.strip():
        raise PointsFileError(f"{path}: the points file is empty")
    first = text.lstrip("\r\n").splitlines()[0]
    delim = max([",", ";", "\t"], key=first.count)
    sep = re.fullmatch(r"\s*sep=(.)\s*", first)
    if sep:  # Excel's "sep=;" line names the delimiter; the header follows
        delim = sep.group(1)
        text = text.replace(first, "", 1)  # the line stays (empty) so line numbers hold
    reader = csv.reader(_io.StringIO(text), delimiter=delim)
    records = _records(path, reader)
    header = None
    for header_line, row in records:
        if any(v.strip() for v in row):
            header = row
            _check_one_line(path, header_line, reader.line_num, row, range(len(row)), delim, 0)
            break
    if header is None:
        raise PointsFileError(f"{path}: the points file is empty")
    norm = [unicodedata.normalize("NFC", h.strip().lower()) for h in header]
    axes = sorted((int(m.group(1)), i) for i, h in enumerate(norm) if (m := _AXIS.match(h)))
    if axes:
        if len(axes) < 2:
            raise PointsFileError(
                f"{path}: line {header_line}: napari points CSV needs at least columns "
                f"'axis-0' and 'axis-1', found {header}"
            )
        fmt = "napari"
        row_i, col_i = axes[-2][1], axes[-1][1]
        label_name = "label" if "label" in norm else "class"
        if label_name not in norm:
            raise PointsFileError(
                f"{path}: line {header_line}: napari points CSV needs a 'label' or 'class' "
                f"column{_suggest(('label', 'class'), header)}; found columns {header}"
            )
        label_i = norm.index(label_name)
        name_i = None
        coord_names = (header[row_i].strip(), header[col_i].strip())
        plane_i = axes[-3][1] if len(axes) >= 3 else None
        _check_unique(path, header_line, header, norm, [norm[i] for _, i in axes] + [label_name])
    else:
        fmt = "coralnet"
        if "label" not in norm and "label code" in norm:  # newer CoralNet exports
            norm[norm.index("label code")] = "label"
        missing = [c for c in CORALNET_COLUMNS if c not in norm]
        if missing:
            hints = "; ".join(
                f"'{c.capitalize()}'{_suggest((c,), header, skip_known=True)}" for c in missing
            )
            raise PointsFileError(
                f"{path}: line {header_line}: missing column(s) {hints}. A CoralNet-style CSV "
                f"needs columns Name, Row, Column, Label (a napari points CSV: axis-0, axis-1 and "
                f"label or class); found columns {header}"
            )
        _check_unique(path, header_line, header, norm, list(CORALNET_COLUMNS))
        name_i, row_i, col_i, label_i = (norm.index(c) for c in CORALNET_COLUMNS)
        plane_i = None
        coord_names = (header[row_i].strip(), header[col_i].strip())
        label_name = header[label_i].strip()
    label_title = header[label_i].strip()
    need = max(i for i in (name_i, row_i, col_i, label_i) if i is not None) + 1

    names: list[str | None] = []
    coords: list[tuple[float, float]] = []
    raw_labels: list[str] = []
    lines: list[int] = []
    planes: list[int] | None = [] if plane_i is not None else None
    used = [i for i in (name_i, row_i, col_i, label_i) if i is not None]
    for line, row in records:
        if not any(v.strip() for v in row):
            continue
        _check_one_line(path, line, reader.line_num, row, used, delim, need - 1)
        if [v.strip().lower() for v in row] == [h.strip().lower() for h in header]:
            raise PointsFileError(f"{path}: line {line} repeats the header of line "
                                  f"{header_line} (two files joined?); remove it")
        if len(row) < need:
            other = [d for d in (",", ";", "\t") if d != delim and d in "".join(row)]
            hint = (f" (the header is split by {delim!r} but this line holds {other[0]!r})"
                    if other else "")
            raise PointsFileError(
                f"{path}: line {line}: expected at least {need} fields, got {len(row)}: "
                f"{_short(row)}{hint}"
            )
        rc = []
        for idx, title in zip((row_i, col_i), coord_names):
            rc.append(_parse_coord(row[idx], f"{path}: line {line}", title))
        lab = row[label_i].strip()
        if not lab:
            raise PointsFileError(
                f"{path}: line {line}: empty {label_title}; every point needs a class label"
            )
        names.append(_nfc(row[name_i]) if name_i is not None else None)
        if name_i is not None and not names[-1]:
            raise PointsFileError(f"{path}: line {line}: empty {header[name_i].strip()}")
        coords.append((rc[0], rc[1]))
        if planes is not None:
            planes.append(_parse_plane(row[plane_i], f"{path}: line {line}",
                                       header[plane_i].strip()))
        raw_labels.append(lab)
        lines.append(line)
    where = [f"line {n}" for n in lines]
    ids, table, textual = _resolve_labels(path, raw_labels, where, classes, None)
    points = _group(names, coords, ids, table, planes)
    return PointsFile(points, table, fmt, textual, _sources(names, where),
                      ndim=len(axes) if axes else 2)


def _records(path: Path, reader):
    """``(line, row)`` for each CSV record, ``line`` being where the record starts.

    The ``csv`` module's own errors (its field-size limit, which a stray quote reaches in a
    long file; a NUL byte) become a :class:`PointsFileError` naming the line where the record
    starts.
    """
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            msg = str(exc)
            if "field larger than field limit" in msg:
                msg = (f"a field runs on for more than {csv.field_size_limit()} characters from "
                       f"here: a quote (\") that opens a field on this line is never closed, so "
                       f"it swallows the rest of the file; remove the stray quote or close it")
            elif "NUL" in msg:
                msg = ("the file holds a NUL byte: is it a spreadsheet or another binary file "
                       "rather than a CSV (save it as CSV)?")
            raise PointsFileError(f"{path}: line {start}: cannot read the CSV: {msg}") from None
        yield start, row
        start = reader.line_num + 1


def _check_one_line(path: Path, start: int, end: int, row, used, delim: str, seps: int) -> None:
    """A quoted field that runs over several lines is an error when it is a column that is
    read, or when its later lines look like records of their own (``seps`` delimiters or more):
    a stray quote merged them. A quoted note over two lines in another column is fine."""
    for j, v in enumerate(row):
        if "\n" not in v and "\r" not in v:
            continue
        rest = v.splitlines()[1:]
        if j in used or any(r.count(delim) >= max(seps, 1) for r in rest):
            raise PointsFileError(
                f"{path}: line {start}: a quote (\") opens field {j + 1} "
                f"({_short(v.splitlines()[0], 40)}...) and is not closed on that line, so lines "
                f"{start}-{end} were read as one field; remove the stray quote (or close it on "
                f"the same line)"
            )


def _check_unique(path: Path, line: int, header, norm, used) -> None:
    """Two columns with the name of a column that is read: refuse rather than pick one."""
    for name in dict.fromkeys(used):
        cols = [i for i, h in enumerate(norm) if h == name]
        if len(cols) > 1:
            shown = " and ".join(f"{i + 1} ({header[i].strip()!r})" for i in cols)
            raise PointsFileError(
                f"{path}: line {line}: columns {shown} have the same name, so it is not clear "
                f"which one to read; rename or remove all but one"
            )


def _suggest(expected, header, skip_known: bool = False) -> str:
    """' (found X: did you mean Y?)' for the header closest to an expected column, or ''."""
    cands = [
        h.strip() for h in header
        if not skip_known or h.strip().lower() not in CORALNET_COLUMNS
    ]
    lowered = {c.lower(): c for c in cands}
    for e in expected:
        match = difflib.get_close_matches(e, list(lowered), n=1, cutoff=0.6)
        if match:
            return f" (found '{lowered[match[0]]}': did you mean '{e.capitalize()}'?)"
    return ""


def _parse_coord(value, where: str, title: str) -> float:
    if isinstance(value, bool):
        raise PointsFileError(f"{where}: {title} {value!r} is not a number")
    try:
        v = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise PointsFileError(f"{where}: {title} {_short(value)} is not a number") from None
    if not math.isfinite(v):
        raise PointsFileError(f"{where}: {title} is {_short(value)}; coordinates must be finite "
                              f"numbers")
    if abs(v) > 2**31:
        raise PointsFileError(f"{where}: {title} {_short(value)} is far outside any image; "
                              f"coordinates are pixel positions")
    return v


def _parse_plane(value, where: str, title: str) -> int:
    """A plane index: a whole number (napari writes ``4.0``), at least 0."""
    v = _parse_coord(value, where, title)
    if abs(v - round(v)) > 1e-6 or v < 0:
        raise PointsFileError(f"{where}: {title} {_short(value)} is not a plane index (a whole "
                              f"number from 0)")
    return int(round(v))


def _short(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _nfc(text) -> str:
    """``text`` stripped and in Unicode NFC, so that names typed on macOS (which stores file
    names decomposed, NFD) match the same names typed elsewhere."""
    return unicodedata.normalize("NFC", str(text).strip())


def _as_int_label(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    s = str(value).strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


def _resolve_labels(path, raw, where, classes, own_table):
    """Integer ids when every label is an integer, else names mapped through a class table."""
    ints = [_as_int_label(v) for v in raw]
    table = ClassTable()
    if own_table is not None:
        table = own_table
    if classes is not None:
        table = table.merged(classes)
    if all(i is not None for i in ints):
        neg = [w for w, i in zip(where, ints) if i < 0]
        if neg:
            raise PointsFileError(f"{path}: negative class ids at {', '.join(neg[:10])}")
        big = [f"{str(v).strip()} ({w})" for v, w, i in zip(raw, where, ints) if i > MAX_CLASS_ID]
        if big:
            more = f" and {len(big) - 5} more" if len(big) > 5 else ""
            raise PointsFileError(
                f"{path}: class id(s) too large for any label image: {', '.join(big[:5])}{more}; "
                f"an integer label is the pixel value of its class in the mask, at most 65535 "
                f"for PNG masks. Renumber the classes, or write class names in the label column "
                f"and give a classes file that maps them to small ids"
            )
        if classes is not None:
            unknown = sorted(set(ints) - set(table.names))
            if unknown:
                log.warning("%s: class id(s) %s are not in the classes table; they are kept "
                            "as they are", path, unknown)
        return np.asarray(ints, dtype=np.int64), table, False
    names = [_nfc(v) for v in raw]
    if table.names:
        ids = [table.id_of(n) for n in names]
        unknown: dict[str, list[str]] = {}
        for n, i, w in zip(names, ids, where):
            if i is None:
                unknown.setdefault(n, []).append(w)
        if unknown:
            parts = []
            for n, ws in list(unknown.items())[:10]:
                hint = difflib.get_close_matches(n, list(table.names.values()), n=1)
                hint = f", did you mean {hint[0]!r}?" if hint else ""
                more = f" and {len(ws) - 5} more" if len(ws) > 5 else ""
                parts.append(f"{n!r} ({', '.join(ws[:5])}{more}{hint})")
            raise PointsFileError(
                f"{path}: unknown class name(s) {'; '.join(parts)}; known classes: "
                f"{sorted(table.names.values())}"
            )
        return np.asarray(ids, dtype=np.int64), table, True
    numeric = [(n, w) for n, i, w in zip(names, ints, where) if i is not None]
    if numeric:
        # one stray name (a typo, "NA") turns every integer label into a name with a new id
        text = [f"{n!r} ({w})" for n, i, w in zip(names, ints, where) if i is None]
        log.warning(
            "%s: labels mix integers (%d, e.g. %r at %s) and names (%d: %s%s); all are read "
            "as names with ids 1..K in sorted name order, so an integer label is no longer "
            "its pixel value: fix the names or give a classes table", path, len(numeric),
            numeric[0][0], numeric[0][1], len(text), ", ".join(text[:5]),
            " ..." if len(text) > 5 else "")
    spelt: dict[str, dict[str, str]] = {}  # case-folded name -> spelling -> first place
    for n, w in zip(names, where):
        spelt.setdefault(n.casefold(), {}).setdefault(n, w)
    variants = [v for v in spelt.values() if len(v) > 1]
    if variants:  # as a classes table matches names: one class whatever the case
        log.warning("%s: class names that differ only by case are read as one class: %s", path,
                    "; ".join(" = ".join(f"{n!r} ({w})" for n, w in v.items())
                              for v in variants[:5]))
        first = {k: next(iter(v)) for k, v in spelt.items()}
        names = [first[n.casefold()] for n in names]
    table = ClassTable.from_names(names)
    by_name = {n: i for i, n in table.names.items()}
    return np.asarray([by_name[n] for n in names], dtype=np.int64), table, True


def _sources(names, where) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    for n, w in zip(names, where):
        out.setdefault(n, []).append(w)
    return out


def _group(names, coords, ids, table: ClassTable, planes=None) -> dict[str | None, PointSet]:
    order: dict[str | None, list[int]] = {}
    for i, n in enumerate(names):
        order.setdefault(n, []).append(i)
    arr = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    zs = None if planes is None else np.asarray(planes, dtype=np.int64).reshape(-1)
    out = {}
    for n, idx in order.items():
        out[n] = PointSet(arr[idx], ids[idx], dict(table.names),
                          None if zs is None else zs[idx])
    if not out:
        out[None] = PointSet.empty(dict(table.names))
    return out


# ---------------------------------------------------------------------------------------- JSON


def _read_json(path: Path, text: str, classes: ClassTable | None) -> PointsFile:
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise PointsFileError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    except ValueError as exc:  # a key given twice, an integer of more than 4300 digits
        raise PointsFileError(f"{path}: invalid JSON: {exc}") from None
    except RecursionError:
        raise PointsFileError(f"{path}: invalid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise PointsFileError(f"{path}: expected a JSON object with 'images' or 'points'")
    data = {str(k).lower(): v for k, v in data.items()}
    version = data.get("version", 1)
    if version != 1:
        raise PointsFileError(f"{path}: unsupported points file version {version!r}; expected 1")
    own = None
    if data.get("classes") is not None:
        own = _json_classes(path, data["classes"])
    if "images" in data:
        images = data["images"]
        if not isinstance(images, dict):
            raise PointsFileError(f"{path}: 'images' must map image file names to point lists")
        groups = [(_nfc(k), v, f"images[{str(k)!r}]") for k, v in images.items()]
        if len({g[0] for g in groups}) < len(groups):
            raise PointsFileError(f"{path}: 'images' names an image twice (the names differ "
                                  f"only by spaces or Unicode normalisation); merge them")
    elif "points" in data:
        groups = [(None, data["points"], "points")]
    else:
        raise PointsFileError(
            f"{path}: expected a key 'images' (file name -> points) or 'points'; found "
            f"{sorted(data)}"
        )
    names, coords, raw, where = [], [], [], []
    planes: list[int | None] = []
    for name, pts, loc in groups:
        if not isinstance(pts, list):
            raise PointsFileError(f"{path}: {loc} must be a list of points")
        for j, p in enumerate(pts):
            w = f"{loc}[{j}]"
            if not isinstance(p, dict):
                raise PointsFileError(f"{path}: {w}: expected an object with row, col, label")
            keys = [str(k).strip().lower() for k in p]
            if len(set(keys)) < len(keys):
                raise PointsFileError(f"{path}: {w}: keys {sorted(map(str, p))} repeat a key "
                                      f"(case and spaces are ignored); keep one")
            p = dict(zip(keys, p.values()))
            if "column" in p and "col" not in p:
                p["col"] = p["column"]
            if "class" in p and "label" not in p:
                p["label"] = p["class"]
            for key in ("row", "col", "label"):
                if key not in p:
                    hint = difflib.get_close_matches(key, list(p), n=1)
                    hint = f" (found {hint[0]!r}: did you mean {key!r}?)" if hint else ""
                    raise PointsFileError(f"{path}: {w}: missing {key!r}{hint}")
            r = _parse_coord(p["row"], f"{path}: {w}", "row")
            c = _parse_coord(p["col"], f"{path}: {w}", "col")
            if p["label"] is None or (isinstance(p["label"], str) and not p["label"].strip()):
                raise PointsFileError(f"{path}: {w}: empty label; every point needs a class label")
            if isinstance(p["label"], bool) or not isinstance(p["label"], (int, float, str)) or (
                    isinstance(p["label"], float) and not p["label"].is_integer()):
                raise PointsFileError(f"{path}: {w}: label {p['label']!r} is neither an integer "
                                      f"class id nor a class name")
            names.append(name)
            coords.append((r, c))
            planes.append(None if p.get("plane") is None
                          else _parse_plane(p["plane"], f"{path}: {w}", "plane"))
            raw.append(p["label"])
            where.append(w)
    with_plane = [z is not None for z in planes]
    if any(with_plane) and not all(with_plane):
        first = where[with_plane.index(False)]
        raise PointsFileError(f"{path}: {first}: no 'plane', but other points have one; give "
                              f"every point of a stack its plane (or none of them)")
    ids, table, textual = _resolve_labels(path, raw, where, classes, own)
    out = _group(names, coords, ids, table, planes if planes and all(with_plane) else None)
    sources = _sources(names, where)
    for name, _, _ in groups:  # keep images listed with no points (they are skipped later)
        if name not in out:
            out[name] = PointSet.empty(dict(table.names))
    if None in out and len(out) > 1 and not out[None]:
        del out[None]
    return PointsFile(out, table, "json", textual, sources,
                      ndim=3 if planes and all(with_plane) else 2)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs):
    """``object_pairs_hook`` that refuses a key given twice in one object (``json`` would keep
    the last one silently)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"key {k!r} is given twice in one object ({k!r}: {out[k]!r} and "
                                f"{k!r}: {v!r}); keep one")
        out[k] = v
    return out


def _json_classes(path: Path, items) -> ClassTable:
    if not isinstance(items, list):
        raise PointsFileError(f"{path}: 'classes' must be a list of {{id, name, colour}}")
    return classes_from_items(items, lambda i: f"{path}: classes[{i}]", PointsFileError)


# ------------------------------------------------------------------------------------- writing


def _fmt(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def _label_text(label: int, table: ClassTable | None, names: bool) -> str:
    if names and table is not None and int(label) in table.names:
        return table.names[int(label)]
    return str(int(label))


def write_points_csv(
    path: str | os.PathLike,
    points: Mapping[str, PointSet],
    *,
    classes: ClassTable | None = None,
    label_names: bool = False,
) -> Path:
    """Write points of several images as a CoralNet-style CSV (``Name,Row,Column,Label``).

    Parameters
    ----------
    path : str or PathLike
    points : mapping of image file name to PointSet
    classes : ClassTable, optional
        Used for class names when ``label_names`` is true.
    label_names : bool
        Write class names instead of integer ids (ids without a name stay integers).

    Returns
    -------
    Path
        The written file (written atomically).
    """
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Name", "Row", "Column", "Label"])
    for name, ps in points.items():
        for (r, c), lab in zip(ps.coords, ps.labels):
            w.writerow([name, _fmt(r), _fmt(c), _label_text(lab, classes, label_names)])
    return atomic_write_text(path, buf.getvalue())


def write_napari_points_csv(
    path: str | os.PathLike, points: PointSet, *, classes: ClassTable | None = None,
    label_names: bool = False,
) -> Path:
    """Write one image's points as a napari points CSV (``index,axis-0,axis-1,label``; with
    planes ``index,axis-0,axis-1,axis-2,label``, ``axis-0`` the plane)."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    zs = points.planes
    w.writerow(["index", "axis-0", "axis-1", "label"] if zs is None
               else ["index", "axis-0", "axis-1", "axis-2", "label"])
    for i, ((r, c), lab) in enumerate(zip(points.coords, points.labels)):
        lead = [i] if zs is None else [i, int(zs[i])]
        w.writerow([*lead, _fmt(r), _fmt(c), _label_text(lab, classes, label_names)])
    return atomic_write_text(path, buf.getvalue())


def write_points_json(
    path: str | os.PathLike,
    points: Mapping[str | None, PointSet],
    *,
    classes: ClassTable | None = None,
) -> Path:
    """Write points in the JSON schema of this module (integer labels, optional class table).

    A mapping with the single key ``None`` is written as ``{"points": [...]}``.
    """
    data: dict = {"version": 1}
    if classes is not None and len(classes):
        ids = set(classes.ids)
        for ps in points.values():
            ids.update(int(i) for i in ps.labels)
        data["classes"] = classes.to_list(ids)

    def plist(ps: PointSet) -> list[dict]:
        out = [
            {"row": float(r), "col": float(c), "label": int(lab)}
            for (r, c), lab in zip(ps.coords, ps.labels)
        ]
        if ps.planes is not None:
            for item, z in zip(out, ps.planes):
                item["plane"] = int(z)
        return out

    if list(points) == [None]:
        data["points"] = plist(points[None])
    else:
        if None in points:
            raise ValueError("a points mapping with several images cannot use the key None")
        data["images"] = {str(k): plist(v) for k, v in points.items()}
    return atomic_write_json(path, data)


def write_unlabelled_points(path: str | os.PathLike, name: str, coords: np.ndarray) -> Path:
    """Write points still to be labelled (suggestions) for image ``name``.

    ``.json`` -> ``{"version": 1, "images": {name: [{"row", "col", "label": null}]}}``;
    anything else -> CoralNet-style CSV ``Name,Row,Column,Label`` with an empty ``Label``,
    ready to be filled in and passed back to ``napari-sseg expand --points``.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if Path(path).suffix.lower() == ".json":
        pts = [{"row": float(r), "col": float(c), "label": None} for r, c in coords]
        return atomic_write_json(path, {"version": 1, "images": {name: pts}})
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Name", "Row", "Column", "Label"])
    for r, c in coords:
        w.writerow([name, _fmt(r), _fmt(c), ""])
    return atomic_write_text(path, buf.getvalue())


