"""Class tables: default palette, JSON/CSV classes files and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sseg.io import (
    ClassesFileError,
    ClassTable,
    colour_hex,
    default_colour,
    parse_colour,
    read_classes,
    write_classes_csv,
    write_classes_json,
)


def test_default_palette_is_stable_and_distinct():
    cols = [default_colour(i) for i in range(64)]
    assert cols[0] == (31, 119, 180)
    assert len(set(cols)) == 64
    assert all(0 <= v <= 255 for c in cols for v in c)
    assert default_colour(1000) == default_colour(1000)


def test_parse_colour_forms():
    assert parse_colour("#FF8000") == (255, 128, 0)
    assert parse_colour("f80") == (255, 136, 0)
    assert parse_colour([1, 2, 3]) == (1, 2, 3)
    assert colour_hex((255, 128, 0)) == "#ff8000"
    for bad in ("#12345", "red", [1, 2], [0, 0, 300]):
        with pytest.raises(ValueError, match="not a colour"):
            parse_colour(bad)


def test_lut_uses_own_colours_then_defaults():
    t = ClassTable({1: "a", 3: "b"}, {3: (1, 2, 3)})
    lut = t.lut(4)
    assert lut.shape == (5, 3) and lut.dtype == np.uint8
    assert tuple(lut[3]) == (1, 2, 3)
    assert tuple(lut[1]) == default_colour(1)


def test_classes_csv_with_header_and_colours(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("ID, Name ,Color\n3,coral,#ff0000\n5,sand,\n")
    t = read_classes(f)
    assert t.names == {3: "coral", 5: "sand"}
    assert t.colours == {3: (255, 0, 0)}
    assert t.id_of("Coral") == 3 and t.id_of("rock") is None


def test_classes_csv_without_header(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("1,coral\n2,sand\n")
    assert read_classes(f).names == {1: "coral", 2: "sand"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("id,label\n1,coral\n", "line 1: classes CSV needs columns 'id' and 'name'"),
        ("id,name\n1,coral\nx,sand\n", "line 3: class id 'x' is not an integer"),
        ("id,name\n1,coral\n1,sand\n", "line 3: duplicate class id 1"),
        ("id,name,colour\n1,coral,#zzzzzz\n", "line 2: '#zzzzzz' is not a colour"),
        ("id,name\n1,coral\n2,coral\n", "class name 'coral' is used by ids 1 and 2"),
    ],
)
def test_classes_csv_errors(tmp_path, text, expected):
    f = tmp_path / "c.csv"
    f.write_text(text)
    with pytest.raises(ClassesFileError) as err:
        read_classes(f)
    assert f"{f}" in str(err.value) and expected in str(err.value)


def test_classes_json_forms(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"classes": [{"id": 2, "name": "sand", "color": [1, 2, 3]}]}))
    assert read_classes(a).colours == {2: (1, 2, 3)}
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"1": "coral", "2": "sand"}))
    assert read_classes(b).names == {1: "coral", 2: "sand"}
    c = tmp_path / "c.json"
    c.write_text('[{"id": -1, "name": "x"}]')
    with pytest.raises(ClassesFileError, match="class #0: class id -1 is negative"):
        read_classes(c)


def test_classes_roundtrip_json_and_csv(tmp_path):
    t = ClassTable({1: "coral", 2: "sand, wet"}, {1: (10, 20, 30)})
    for f in (write_classes_json(tmp_path / "c.json", t), write_classes_csv(tmp_path / "c.csv", t)):
        back = read_classes(f)
        assert back.names == t.names
        assert back.colours[1] == (10, 20, 30)
        assert back.colours[2] == default_colour(2)  # written explicitly, read back the same
