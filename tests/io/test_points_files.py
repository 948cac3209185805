"""Points files: CoralNet CSV, napari points CSV, JSON schema; errors naming file and line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sseg.core.points import PointSet
from napari_sseg.io import (
    ClassTable,
    PointsFileError,
    read_points_file,
    write_napari_points_csv,
    write_points_csv,
    write_points_json,
    write_unlabelled_points,
)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_coralnet_csv_groups_by_name_and_keeps_integer_ids(tmp_path):
    f = _write(tmp_path / "p.csv", "Name,Row,Column,Label\n"
               "a.png,1,2,3\nb.png,4.5,5,0\na.png,6,7,300\n")
    pf = read_points_file(f)
    assert pf.format == "coralnet" and not pf.textual
    assert list(pf.points) == ["a.png", "b.png"]
    np.testing.assert_array_equal(pf.points["a.png"].coords, [[1, 2], [6, 7]])
    np.testing.assert_array_equal(pf.points["a.png"].labels, [3, 300])
    np.testing.assert_array_equal(pf.points["b.png"].coords, [[4.5, 5]])
    assert pf.sources["a.png"] == ["line 2", "line 4"]


def test_columns_match_case_insensitively_with_bom_spaces_and_extra_columns(tmp_path):
    f = tmp_path / "p.csv"
    f.write_bytes("\ufeff row ; NAME ;Extra; column;LABEL\n10;x.jpg;zz;20;2\n".encode())
    pf = read_points_file(f)
    np.testing.assert_array_equal(pf.points["x.jpg"].coords, [[10, 20]])
    np.testing.assert_array_equal(pf.points["x.jpg"].labels, [2])


def test_coralnet_label_code_column(tmp_path):
    f = _write(tmp_path / "p.csv", "Name,Date,Row,Column,Label code,Label ID\n"
               "a.jpg,2020-01-01,10,20,Acr,88\na.jpg,2020-01-01,30,40,Sand,12\n")
    pf = read_points_file(f)
    assert pf.classes.names == {1: "Acr", 2: "Sand"}
    np.testing.assert_array_equal(pf.points["a.jpg"].labels, [1, 2])


def test_textual_labels_get_ids_in_sorted_name_order(tmp_path):
    f = _write(tmp_path / "p.csv", "Name,Row,Column,Label\n"
               "a.png,1,1,sand\na.png,2,2,Acropora\na.png,3,3,rock\na.png,4,4,sand\n")
    pf = read_points_file(f)
    assert pf.textual
    assert pf.classes.names == {1: "Acropora", 2: "rock", 3: "sand"}
    np.testing.assert_array_equal(pf.points["a.png"].labels, [3, 1, 2, 3])
    assert pf.points["a.png"].class_names == {1: "Acropora", 2: "rock", 3: "sand"}


def test_labels_mixing_integers_and_names_are_names_with_a_warning(tmp_path, caplog):
    f = _write(tmp_path / "p.csv", "Name,Row,Column,Label\n"
               "a.png,1,1,3\na.png,2,2,12\na.png,3,3,NA\na.png,4,4,3\n")
    pf = read_points_file(f)
    assert pf.textual
    assert pf.classes.names == {1: "12", 2: "3", 3: "NA"}
    np.testing.assert_array_equal(pf.points["a.png"].labels, [2, 1, 3, 2])
    assert str(f) in caplog.text
    assert "labels mix integers (3, e.g. '3' at line 2) and names (1: 'NA' (line 4))" in caplog.text
    caplog.clear()
    read_points_file(_write(tmp_path / "names.csv", "Name,Row,Column,Label\na.png,1,1,sand\n"))
    assert "mix" not in caplog.text


def test_textual_labels_use_the_classes_table(tmp_path):
    f = _write(tmp_path / "p.csv", "Name,Row,Column,Label\na.png,1,1,sand\na.png,2,2,CORAL\n")
    table = ClassTable({7: "coral", 9: "sand"})
    pf = read_points_file(f, classes=table)
    np.testing.assert_array_equal(pf.points["a.png"].labels, [9, 7])


def test_integer_ids_missing_from_the_table_are_kept_with_a_warning(tmp_path, caplog):
    f = _write(tmp_path / "p.csv", "Name,Row,Column,Label\na.png,1,1,7\na.png,2,2,3\n")
    pf = read_points_file(f, classes=ClassTable({7: "coral"}))
    np.testing.assert_array_equal(pf.points["a.png"].labels, [7, 3])
    assert "class id(s) [3] are not in the classes table" in caplog.text


def test_unknown_class_names_with_a_table_name_the_lines(tmp_path):
    f = _write(tmp_path / "p.csv", "Name,Row,Column,Label\na.png,1,1,sand\n"
               "a.png,2,2,cora\na.png,3,3,rock\n")
    with pytest.raises(PointsFileError) as err:
        read_points_file(f, classes=ClassTable({7: "coral", 9: "sand"}))
    msg = str(err.value)
    assert str(f) in msg
    assert "'cora' (line 3, did you mean 'coral'?)" in msg
    assert "'rock' (line 4" in msg
    assert "'sand'" not in msg.split("known classes")[0]


@pytest.mark.parametrize(
    "header, expected",
    [
        ("Name,Row,Colum,Label", "'Column' (found 'Colum': did you mean 'Column'?)"),
        ("Name,Rw,Column,Label", "'Row' (found 'Rw': did you mean 'Row'?)"),
        ("Name,Row,Column", "missing column(s) 'Label'"),
        ("Image,Row,Column,Label", "missing column(s) 'Name'"),
    ],
)
def test_missing_or_misspelt_columns(tmp_path, header, expected):
    f = _write(tmp_path / "p.csv", header + "\na.png,1,2,3\n")
    with pytest.raises(PointsFileError, match="line 1") as err:
        read_points_file(f)
    assert str(f) in str(err.value)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    "row, expected",
    [
        ("a.png,abc,2,1", "line 3: Row 'abc' is not a number"),
        ("a.png,1,nan,1", "line 3: Column is 'nan'; coordinates must be finite"),
        ("a.png,1,,1", "line 3: Column '' is not a number"),
        ("a.png,1,inf,1", "line 3: Column is 'inf'"),
        ("a.png,1,2,", "line 3: empty Label"),
        ("a.png,1", "line 3: expected at least 4 fields, got 2"),
    ],
)
def test_bad_rows_name_the_csv_line(tmp_path, row, expected):
    f = _write(tmp_path / "p.csv", "Name,Row,Column,Label\na.png,5,5,1\n" + row + "\n")
    with pytest.raises(PointsFileError) as err:
        read_points_file(f)
    assert f"{f}: {expected}" in str(err.value)


def test_line_numbers_count_physical_lines(tmp_path):
    # a quoted field spanning two lines and a blank line shift the following line numbers
    f = _write(tmp_path / "p.csv", 'Name,Row,Column,Label,Note\na.png,1,1,1,"two\nlines"\n\n'
               "a.png,x,1,1,\n")
    with pytest.raises(PointsFileError, match=r"line 5: Row 'x' is not a number"):
        read_points_file(f)


def test_negative_ids_are_refused(tmp_path):
    f = _write(tmp_path / "p.csv", "Name,Row,Column,Label\na.png,1,1,2\na.png,1,1,-1\n")
    with pytest.raises(PointsFileError, match="negative class ids at line 3"):
        read_points_file(f)


def test_napari_points_csv_with_index_and_class_column(tmp_path):
    f = _write(tmp_path / "p.csv", "index,axis-0,axis-1,class\n0,10.5,20,2\n1,3,4,1\n")
    pf = read_points_file(f)
    assert pf.format == "napari" and list(pf.points) == [None]
    np.testing.assert_array_equal(pf.points[None].coords, [[10.5, 20], [3, 4]])
    np.testing.assert_array_equal(pf.points[None].labels, [2, 1])


def test_files_written_by_napari_itself(tmp_path):
    write = pytest.importorskip("napari_builtins.io._write").napari_write_points
    write(str(tmp_path / "a.csv"), np.array([[10.5, 20.25], [3, 4]]),
          {"properties": {"label": np.array(["sand", "coral"])}})
    pf = read_points_file(tmp_path / "a.csv")
    np.testing.assert_array_equal(pf.points[None].coords, [[10.5, 20.25], [3, 4]])
    np.testing.assert_array_equal(pf.points[None].labels, [2, 1])
    # a 3D layer with numeric classes: napari writes every value as a float
    write(str(tmp_path / "b.csv"), np.array([[0, 10.5, 20.25], [1, 3, 4]]),
          {"properties": {"class": np.array([1, 2])}})
    assert (tmp_path / "b.csv").read_text().splitlines()[1] == "0.0,0.0,10.5,20.25,1.0"
    pf = read_points_file(tmp_path / "b.csv")
    np.testing.assert_array_equal(pf.points[None].coords, [[10.5, 20.25], [3, 4]])
    np.testing.assert_array_equal(pf.points[None].labels, [1, 2])


def test_napari_3d_points_take_the_last_two_axes(tmp_path):
    f = _write(tmp_path / "p.csv", "index,axis-0,axis-1,axis-2,label\n0,7,10,20,coral\n")
    pf = read_points_file(f)
    np.testing.assert_array_equal(pf.points[None].coords, [[10, 20]])
    assert pf.classes.names == {1: "coral"}


def test_napari_csv_without_label_column(tmp_path):
    f = _write(tmp_path / "p.csv", "index,axis-0,axis-1,lable\n0,1,2,1\n")
    with pytest.raises(PointsFileError, match=r"line 1: napari points CSV needs a 'label' or "
                                              r"'class' column \(found 'lable'"):
        read_points_file(f)


def test_json_schema_roundtrip_with_classes(tmp_path):
    table = ClassTable({1: "coral", 2: "sand"}, {1: (255, 0, 0)})
    pts = {
        "a.png": PointSet([[1.25, 2], [3, 4]], [1, 2]),
        "b.png": PointSet([[5, 6]], [2]),
    }
    f = write_points_json(tmp_path / "p.json", pts, classes=table)
    data = json.loads(f.read_text())
    assert data["version"] == 1
    assert data["classes"][0] == {"id": 1, "name": "coral", "colour": "#ff0000"}
    assert data["images"]["a.png"][0] == {"row": 1.25, "col": 2.0, "label": 1}
    pf = read_points_file(f)
    assert pf.format == "json"
    assert pf.classes.names == {1: "coral", 2: "sand"} and pf.classes.colours[1] == (255, 0, 0)
    for k, ps in pts.items():
        np.testing.assert_array_equal(pf.points[k].coords, ps.coords)
        np.testing.assert_array_equal(pf.points[k].labels, ps.labels)


def test_json_names_resolve_through_its_own_classes_and_tolerate_aliases(tmp_path):
    f = _write(tmp_path / "p.json", json.dumps({
        "Version": 1,
        "classes": [{"id": 4, "name": "coral"}, {"id": 8, "name": "sand"}],
        "points": [{"Row": 1, "column": 2, "class": "sand"},
                   {"row": 3, "col": 4, "label": "coral"}],
    }))
    pf = read_points_file(f)
    assert list(pf.points) == [None]
    np.testing.assert_array_equal(pf.points[None].labels, [8, 4])
    np.testing.assert_array_equal(pf.points[None].coords, [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"images": {"a.png": [{"row": 1, "cl": 2, "label": 1}]}},
         "images['a.png'][0]: missing 'col' (found 'cl': did you mean 'col'?)"),
        ({"images": {"a.png": [{"row": "x", "col": 2, "label": 1}]}},
         "images['a.png'][0]: row 'x' is not a number"),
        ({"images": {"a.png": [{"row": 1, "col": 2, "label": None}]}},
         "images['a.png'][0]: empty label"),
        ({"classes": [{"id": 1, "name": "coral"}],
          "points": [{"row": 1, "col": 2, "label": "sand"}]},
         "unknown class name(s) 'sand' (points[0])"),
        ({"version": 2, "points": []}, "unsupported points file version 2"),
        ({"pts": []}, "expected a key 'images'"),
    ],
)
def test_json_errors_name_the_entry(tmp_path, doc, expected):
    f = _write(tmp_path / "p.json", json.dumps(doc))
    with pytest.raises(PointsFileError) as err:
        read_points_file(f)
    assert str(f) in str(err.value) and expected in str(err.value)


def test_invalid_json_names_the_line(tmp_path):
    f = _write(tmp_path / "p.json", '{"points": [\n{"row": 1,,}]}')
    with pytest.raises(PointsFileError, match=r"p.json: line 2: invalid JSON"):
        read_points_file(f)


def test_coralnet_csv_roundtrip_with_names(tmp_path):
    table = ClassTable({1: "coral", 2: "sand"})
    pts = {"a b.png": PointSet([[1.5, 2.25], [0, 9]], [2, 1])}
    f = write_points_csv(tmp_path / "out.csv", pts, classes=table, label_names=True)
    assert f.read_text().splitlines() == ["Name,Row,Column,Label", "a b.png,1.5,2.25,sand",
                                         "a b.png,0,9,coral"]
    pf = read_points_file(f, classes=table)
    np.testing.assert_array_equal(pf.points["a b.png"].labels, [2, 1])
    np.testing.assert_array_equal(pf.points["a b.png"].coords, pts["a b.png"].coords)


def test_napari_csv_roundtrip(tmp_path):
    ps = PointSet([[1, 2], [3.5, 4]], [5, 6])
    f = write_napari_points_csv(tmp_path / "n.csv", ps)
    assert f.read_text().splitlines()[0] == "index,axis-0,axis-1,label"
    pf = read_points_file(f)
    np.testing.assert_array_equal(pf.points[None].coords, ps.coords)
    np.testing.assert_array_equal(pf.points[None].labels, ps.labels)


def test_unlabelled_points_must_be_labelled_before_use(tmp_path):
    f = write_unlabelled_points(tmp_path / "s.csv", "a.png", np.array([[1.0, 2.0], [3, 4]]))
    assert f.read_text().splitlines() == ["Name,Row,Column,Label", "a.png,1,2,", "a.png,3,4,"]
    with pytest.raises(PointsFileError, match="line 2: empty Label"):
        read_points_file(f)
    # once the user fills the labels in, the file is a valid CoralNet-style CSV
    f.write_text(f.read_text().replace("a.png,1,2,", "a.png,1,2,coral").replace(
        "a.png,3,4,", "a.png,3,4,sand"))
    pf = read_points_file(f)
    np.testing.assert_array_equal(pf.points["a.png"].labels, [1, 2])
    j = write_unlabelled_points(tmp_path / "s.json", "a.png", np.array([[1.0, 2.0]]))
    assert json.loads(j.read_text())["images"]["a.png"] == [{"row": 1.0, "col": 2.0,
                                                             "label": None}]


def test_empty_and_unreadable_files(tmp_path):
    with pytest.raises(PointsFileError, match="the points file is empty"):
        read_points_file(_write(tmp_path / "e.csv", "\n\n"))
    with pytest.raises(PointsFileError, match="cannot read points file"):
        read_points_file(tmp_path / "missing.csv")
    header_only = read_points_file(_write(tmp_path / "h.csv", "Name,Row,Column,Label\n"))
    assert sum(len(p) for p in header_only.points.values()) == 0
