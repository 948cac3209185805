"""Class tables: class id -> name and display colour; default palette; JSON/CSV reading and writing.

A classes file is either

* JSON: ``{"classes": [{"id": 1, "name": "coral", "colour": "#ff7f0e"}, ...]}``, the bare list,
  or a mapping ``{"1": "coral", ...}``; ``colour`` (or ``color``) is optional and may be
  ``"#rrggbb"`` or ``[r, g, b]``;
* CSV: columns ``id, name[, colour]`` (header optional, names case-insensitive, ``color`` also
  accepted); colours as ``#rrggbb``.
"""

from __future__ import annotations

import colorsys
import csv
import io as _io
import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write_json, atomic_write_text

__all__ = [
    "ClassTable",
    "ClassesFileError",
    "default_colour",
    "parse_colour",
    "colour_hex",
    "read_classes",
    "write_classes_json",
    "write_classes_csv",
]

# tab10 followed by the light tab20 tones: distinct on photos, colour-blind-friendlier than RGB
_BASE_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
]


class ClassesFileError(ValueError):
    """A classes file that cannot be understood; the message names the file and line."""


def default_colour(class_id: int) -> tuple[int, int, int]:
    """Default display colour of ``class_id``.

    Ids 0..19 use the tab10/tab20 palette; larger ids get golden-ratio spaced hues, so every id
    has a stable colour.
    """
    class_id = int(class_id)
    if 0 <= class_id < len(_BASE_PALETTE):
        return _BASE_PALETTE[class_id]
    h = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.65, 0.95)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def parse_colour(value) -> tuple[int, int, int]:
    """Parse ``"#rrggbb"``, ``"#rgb"`` or a sequence of three 0-255 ints into an RGB tuple.

    Raises
    ------
    ValueError
        If the value is not a colour.
    """
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("#"):
            s = s[1:]
        if len(s) == 3:
            s = "".join(ch * 2 for ch in s)
        if len(s) == 6:
            try:
                return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not a colour; expected '#rrggbb'")
    try:
        rgb = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a colour; expected '#rrggbb' or [r, g, b]") from None
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"{value!r} is not a colour; expected three values in 0..255")
    return (rgb[0], rgb[1], rgb[2])


def colour_hex(rgb: tuple[int, int, int]) -> str:
    """``(r, g, b)`` -> ``'#rrggbb'``."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass
class ClassTable:
    """Class ids with names and colours.

    Attributes
    ----------
    names : dict of int to str
        Class name per id.
    colours : dict of int to (r, g, b)
        Display colour per id; ids without one use :func:`default_colour`.
    """

    names: dict[int, str] = field(default_factory=dict)
    colours: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    @classmethod
    def from_names(cls, names) -> "ClassTable":
        """Ids 1..K for the distinct ``names`` in sorted order."""
        return cls({i + 1: n for i, n in enumerate(sorted(set(names)))})

    @property
    def ids(self) -> list[int]:
        """Sorted class ids (with a name or a colour)."""
        return sorted(set(self.names) | set(self.colours))

    def __len__(self) -> int:
        return len(self.ids)

    def id_of(self, name: str) -> int | None:
        """Id of class ``name`` (exact match first, then ignoring case, surrounding spaces and
        Unicode normalisation: ``'café'`` typed on macOS, NFD, matches ``'café'`` in NFC), or
        ``None``."""
        for cid, n in self.names.items():
            if n == name:
                return cid
        low = _fold(name)
        for cid, n in self.names.items():
            if _fold(n) == low:
                return cid
        return None

    def colour(self, class_id: int) -> tuple[int, int, int]:
        """Colour of ``class_id`` (its own or the default)."""
        return self.colours.get(int(class_id), default_colour(class_id))

    def lut(self, max_id: int) -> np.ndarray:
        """(max_id + 1, 3) uint8 colour look-up table indexed by class id."""
        return np.array([self.colour(i) for i in range(int(max_id) + 1)], dtype=np.uint8).reshape(
            -1, 3
        )

    def merged(self, other: "ClassTable") -> "ClassTable":
        """A copy with ``other``'s names and colours added (``other`` wins on conflicts)."""
        return ClassTable({**self.names, **other.names}, {**self.colours, **other.colours})

    def to_list(self, ids=None) -> list[dict]:
        """``[{"id", "name", "colour"}]`` for ``ids`` (default: all ids of the table)."""
        ids = self.ids if ids is None else sorted(int(i) for i in ids)
        return [
            {"id": i, "name": self.names.get(i, str(i)), "colour": colour_hex(self.colour(i))}
            for i in ids
        ]


def read_text_file(path: Path, what: str, error: type[ValueError]) -> str:
    """The text of a points or classes file: UTF-8 (a byte-order mark is dropped) or UTF-16
    with its byte-order mark (spreadsheets' "Unicode text"); anything else raises ``error``
    naming the file, and the line and column of the first byte that is not UTF-8."""
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise error(f"{path}: cannot read {what}: it starts as UTF-16 text but is not "
                        f"valid UTF-16") from None
    if data.startswith(b"\x89PNG") or data[:4] in (b"II*\x00", b"MM\x00*") or data[:2] == b"PK":
        raise error(f"{path}: is not a text file (an image or a spreadsheet?); a {what} is a "
                    f"CSV or JSON text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(f"{path}: line {line}, column {col}: byte 0x{data[exc.start]:02x} is not "
                    f"UTF-8 text; save the file as UTF-8 (for example 'CSV UTF-8' in a "
                    f"spreadsheet)") from None


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", str(name)).strip().casefold()


def read_classes(path: str | os.PathLike) -> ClassTable:
    """Read a classes file (JSON or CSV, see the module docstring).

    Raises
    ------
    ClassesFileError
        Naming the file (and line for CSV) when it cannot be read or understood.
    """
    path = Path(path)
    text = read_text_file(path, "classes file", ClassesFileError)
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        return _classes_from_json(path, text)
    return _classes_from_csv(path, text)


def _classes_from_json(path: Path, text: str) -> ClassTable:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClassesFileError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:  # an integer of more than 4300 digits
        raise ClassesFileError(f"{path}: invalid JSON: {exc}") from None
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    if isinstance(data, dict):
        items = [{"id": k, "name": v} for k, v in data.items()]
    elif isinstance(data, list):
        items = data
    else:
        raise ClassesFileError(f"{path}: expected a list of classes or a mapping id -> name")
    table = classes_from_items(items, lambda i: f"{path}: class #{i}")
    _check_unique_names(path, table)
    return table


def classes_from_items(items, where, error: type[ValueError] = ClassesFileError) -> ClassTable:
    """A class table from ``[{"id": .., "name": .., "colour"/"color": ..}, ...]``.

    ``where(i)`` gives the message prefix naming item ``i``; problems raise ``error``.
    """
    table = ClassTable()
    for i, item in enumerate(items):
        here = where(i)
        if not isinstance(item, dict) or "id" not in item:
            raise error(f"{here}: expected an object with 'id' and 'name', got {item!r}")
        try:
            cid = _parse_id(item["id"], here)
        except ClassesFileError as exc:
            raise error(str(exc)) from None
        if cid in table.names:
            raise error(f"{here}: duplicate class id {cid}")
        table.names[cid] = unicodedata.normalize("NFC", str(item.get("name", cid)).strip())
        col = item.get("colour", item.get("color"))
        if col is not None:
            try:
                table.colours[cid] = parse_colour(col)
            except ValueError as exc:
                raise error(f"{here}: {exc}") from None
    return table


def _classes_from_csv(path: Path, text: str) -> ClassTable:
    try:
        rows = list(csv.reader(_io.StringIO(text)))
    except csv.Error as exc:  # a NUL byte, a stray quote running past the field-size limit
        raise ClassesFileError(f"{path}: cannot read the CSV: {exc}") from None
    table = ClassTable()
    cols = {"id": 0, "name": 1, "colour": 2}
    start = 0
    if rows and rows[0] and not _is_int(rows[0][0]):
        header = [h.strip().lower() for h in rows[0]]
        header = ["colour" if h == "color" else h for h in header]
        missing = [c for c in ("id", "name") if c not in header]
        if missing:
            raise ClassesFileError(
                f"{path}: line 1: classes CSV needs columns 'id' and 'name' (optional 'colour'); "
                f"missing {missing}, found {rows[0]}"
            )
        cols = {c: header.index(c) for c in ("id", "name", "colour") if c in header}
        start = 1
    for lineno, row in enumerate(rows[start:], start=start + 1):
        if not row or all(not v.strip() for v in row):
            continue
        where = f"{path}: line {lineno}"
        if len(row) <= max(cols["id"], cols["name"]):
            raise ClassesFileError(f"{where}: expected id and name, got {row}")
        cid = _parse_id(row[cols["id"]], where)
        if cid in table.names:
            raise ClassesFileError(f"{where}: duplicate class id {cid}")
        table.names[cid] = unicodedata.normalize("NFC", row[cols["name"]].strip())
        if "colour" in cols and cols["colour"] < len(row) and row[cols["colour"]].strip():
            try:
                table.colours[cid] = parse_colour(row[cols["colour"]])
            except ValueError as exc:
                raise ClassesFileError(f"{where}: {exc}") from None
    if not table.names:
        raise ClassesFileError(f"{path}: no classes found")
    _check_unique_names(path, table)
    return table


def _check_unique_names(path: Path, table: ClassTable) -> None:
    seen: dict[str, int] = {}
    for cid, name in table.names.items():
        if name in seen:
            raise ClassesFileError(
                f"{path}: class name {name!r} is used by ids {seen[name]} and {cid}"
            )
        seen[name] = cid


def _is_int(value: str) -> bool:
    try:
        int(value.strip())
    except ValueError:
        return False
    return True


def _parse_id(value, where: str) -> int:
    try:
        cid = int(str(value).strip())
    except ValueError:
        raise ClassesFileError(f"{where}: class id {value!r} is not an integer") from None
    if cid < 0:
        raise ClassesFileError(f"{where}: class id {cid} is negative")
    if cid > 2**32 - 1:
        raise ClassesFileError(f"{where}: class id {cid} is too large for any label image "
                               f"(at most 65535 for PNG masks); renumber the classes")
    return cid


def write_classes_json(path: str | os.PathLike, table: ClassTable, ids=None) -> Path:
    """Write ``{"classes": [{"id", "name", "colour"}]}`` atomically; returns the path."""
    return atomic_write_json(path, {"classes": table.to_list(ids)})


def write_classes_csv(path: str | os.PathLike, table: ClassTable, ids=None) -> Path:
    """Write a ``id,name,colour`` CSV atomically; returns the path."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "name", "colour"])
    for c in table.to_list(ids):
        w.writerow([c["id"], c["name"], c["colour"]])
    return atomic_write_text(path, buf.getvalue())
