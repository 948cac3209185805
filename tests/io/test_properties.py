"""Property-based tests of the file readers and the label writer (hypothesis).

Any input either reads to a valid point set / class table / array or raises the documented error
type (:class:`PointsFileError`, :class:`ClassesFileError`, :class:`ImageReadError`) with a
message naming the file; never another exception. The number of examples is bounded here
(``SSEG_FUZZ_EXAMPLES``, 40 by default); ``benchmarks/fuzz_io.py`` runs the same properties with
thousands of examples and writes a report.
"""

from __future__ import annotations

import io
import json
import os
import string

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from napari_sseg.io import (  # noqa: E402
    ClassesFileError,
    ImageReadError,
    PointsFileError,
    read_classes,
    read_label_image,
    read_points_file,
    write_label_image,
)
from napari_sseg.io.points_files import MAX_CLASS_ID  # noqa: E402

EXAMPLES = int(os.environ.get("SSEG_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ----------------------------------------------------------------------------- strategies

_words = st.text(alphabet=string.ascii_letters + "éüß _-.", min_size=0, max_size=8)
_numbers = st.one_of(
    st.integers(-5, 300).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e20", "99999999999999999999", "-0", "0x10", " 7 ", "1,5", "NaN", "",
                     "4294967295", "4294967296", "1.0", "1.5", "１"]),
)
_field = st.one_of(_numbers, _words, st.sampled_from(['"', '""', '"a', 'a"b', "\x00", "\t",
                                                       "a;b", "\r", "\n"]))
_columns = st.sampled_from(["Name", "name", " Row ", "Column", "Label", "Label code", "row", "col",
                            "index", "axis-0", "axis-1", "axis-2", "label", "class", "Note",
                            "Lable", "Nmae", ""])


@st.composite
def csv_texts(draw) -> str:
    """CSV text in the dialects of points files: a header of (mostly) known columns, rows of
    numbers, names and stray characters, any of the delimiters, line endings and a BOM."""
    delim = draw(st.sampled_from([",", ";", "\t"]))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if draw(st.booleans()):
        header = ["Name", "Row", "Column", "Label"]
    elif draw(st.booleans()):
        header = ["index", "axis-0", "axis-1", draw(st.sampled_from(["label", "class"]))]
    else:
        header = draw(st.lists(_columns, min_size=1, max_size=6))
    rows = draw(st.lists(st.lists(_field, min_size=0, max_size=len(header) + 1), max_size=6))
    if draw(st.booleans()):  # rows that are well formed apart from their values
        rows += [[draw(st.sampled_from(["a.png", "b.png", "é.png"])), draw(_numbers),
                  draw(_numbers), draw(st.one_of(_numbers, _words))]
                 for _ in range(draw(st.integers(0, 4)))]
    text = end.join(delim.join(r) for r in [header, *rows]) + draw(st.sampled_from(["", end]))
    return ("\ufeff" if draw(st.booleans()) else "") + text


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                       st.floats(allow_nan=False), st.text(max_size=6))
_point = st.dictionaries(
    st.sampled_from(["row", "col", "column", "label", "class", "Row", "ROW ", "plane", "x"]),
    st.one_of(_json_leaf, st.lists(_json_leaf, max_size=2)), max_size=5)


@st.composite
def json_docs(draw):
    """Documents near the JSON points schema: valid ones, wrong types, missing keys."""
    pts = st.lists(st.one_of(_point, _json_leaf), max_size=5)
    doc = draw(st.fixed_dictionaries(
        {},
        optional={
            "version": st.one_of(st.just(1), _json_leaf),
            "classes": st.one_of(st.lists(st.dictionaries(
                st.sampled_from(["id", "name", "colour", "color"]), _json_leaf, max_size=3),
                max_size=3), _json_leaf),
            "images": st.one_of(st.dictionaries(st.text(max_size=5), pts, max_size=3), _json_leaf),
            "points": st.one_of(pts, _json_leaf),
        }))
    return draw(st.one_of(st.just(doc), st.recursive(_json_leaf, lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)),
        max_leaves=6)))


def _check_points_file(pf) -> None:
    for ps in pf.points.values():
        assert ps.coords.ndim == 2 and ps.coords.shape[1] == 2
        assert np.isfinite(ps.coords).all()
        if len(ps):
            assert ps.labels.min() >= 0 and ps.labels.max() <= MAX_CLASS_ID


# ----------------------------------------------------------------------------- properties


@FUZZ
@given(text=csv_texts(), suffix=st.sampled_from([".csv", ".txt"]))
def test_points_csv_reads_or_says_which_file(folder, text, suffix):
    path = folder / f"points{suffix}"
    path.write_text(text, encoding="utf-8", newline="")
    try:
        pf = read_points_file(path)
    except PointsFileError as exc:
        assert str(path) in str(exc)
    else:
        _check_points_file(pf)


@FUZZ
@given(data=st.binary(max_size=200))
def test_points_file_of_arbitrary_bytes(folder, data):
    path = folder / "bytes.csv"
    path.write_bytes(data)
    try:
        pf = read_points_file(path)
    except PointsFileError as exc:
        assert str(path) in str(exc)
    else:
        _check_points_file(pf)


@FUZZ
@given(doc=json_docs())
def test_points_json_reads_or_says_which_file(folder, doc):
    path = folder / "points.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    try:
        pf = read_points_file(path)
    except PointsFileError as exc:
        assert str(path) in str(exc)
    else:
        _check_points_file(pf)


@FUZZ
@given(text=csv_texts(), as_json=st.booleans(), doc=json_docs())
def test_classes_file_reads_or_says_which_file(folder, text, as_json, doc):
    path = folder / ("classes.json" if as_json else "classes.csv")
    path.write_text(json.dumps(doc) if as_json else text, encoding="utf-8", newline="")
    try:
        table = read_classes(path)
    except ClassesFileError as exc:
        assert str(path) in str(exc)
    else:
        assert all(0 <= i <= MAX_CLASS_ID for i in table.ids)


_dtypes = st.sampled_from([np.uint8, np.uint16, np.int32, np.uint32, np.int64, np.float32,
                           np.float64, bool, np.int8])


@FUZZ
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), dtype=_dtypes,
       suffix=st.sampled_from([".png", ".tif"]), seed=st.integers(0, 2**16),
       cut=st.one_of(st.none(), st.integers(0, 400)))
def test_label_image_reads_or_says_which_file(folder, shape, dtype, suffix, seed, cut):
    """Arrays of any shape and type, saved by Pillow or tifffile, possibly truncated."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = (rng.integers(-3, 300, size=shape) * rng.random(size=shape) * 2).astype(dtype)
    path = folder / f"label{suffix}"
    try:
        if suffix == ".tif":
            import tifffile

            tifffile.imwrite(path, arr)
        else:
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            path.write_bytes(buf.getvalue())
    except Exception:  # Pillow / tifffile cannot store this array: nothing to read
        return
    if cut is not None:
        path.write_bytes(path.read_bytes()[:cut])
    try:
        out = read_label_image(path)
    except ImageReadError as exc:
        assert str(path) in str(exc)
    else:
        assert out.ndim == 2 and np.issubdtype(out.dtype, np.integer)


@FUZZ
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), top=st.integers(0, 70000),
       suffix=st.sampled_from([".png", ".tif"]), seed=st.integers(0, 2**16))
def test_label_image_roundtrip_or_value_error(folder, rows, cols, top, suffix, seed):
    labels = np.random.default_rng(seed).integers(0, top + 1, size=(rows, cols))
    path = folder / f"mask{suffix}"
    if suffix == ".png" and top > 65535 and labels.max() > 65535:
        with pytest.raises(ValueError, match="16-bit PNG"):
            write_label_image(path, labels)
        return
    write_label_image(path, labels)
    back = read_label_image(path)
    np.testing.assert_array_equal(back, labels)
    assert back.dtype == (np.uint8 if labels.max() < 256 else np.uint16
                          if labels.max() < 65536 else np.uint32)
