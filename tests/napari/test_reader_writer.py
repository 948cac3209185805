"""npe2 readers and writers: sniffing, round trips, clear errors (no display needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sseg._reader import get_mask_reader, get_reader, read_mask_layer, read_points_layers
from napari_sseg._sample_data import SAMPLE_IMAGE, SAMPLE_POINTS, make_sample_data
from napari_sseg._writer import write_labels, write_points


def _by_class(layers):
    return {
        m["metadata"]["sseg_class_id"]: (np.asarray(d), m["metadata"]["sseg_class_name"],
                                         m["metadata"]["sseg_class_colour"])
        for d, m, t in layers if t == "points"
    }


def test_sample_points_open_as_one_layer_per_class():
    layers = read_points_layers(SAMPLE_POINTS)
    assert [t for *_, t in layers] == ["points"] * 5
    classes = _by_class(layers)
    assert {k: v[1] for k, v in classes.items()} == {
        0: "Building", 1: "Land (unpaved)", 2: "Road", 3: "Vegetation", 4: "Water"
    }
    assert classes[0][2] == "#e4572e"  # colour from the classes.csv beside the points
    assert sum(len(v[0]) for v in classes.values()) == 30
    for d, m, _ in layers:
        assert m["face_color"] == m["metadata"]["sseg_class_colour"]
    # coordinates are the file's (row, col) pixels
    first = SAMPLE_POINTS.read_text().splitlines()[1].split(",")
    cid = int(first[3])
    assert [float(first[1]), float(first[2])] in classes[cid][0].tolist()


def test_sample_data_image_and_points():
    layers = make_sample_data()
    image, meta, kind = layers[0]
    assert kind == "image" and image.shape == (544, 510, 3) and image.dtype == np.uint8
    assert meta["rgb"] is True
    rc = np.concatenate([np.asarray(d) for d, _, t in layers[1:]])
    assert ((rc >= 0) & (rc < [544, 510])).all()


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_points_round_trip(tmp_path, suffix):
    layers = read_points_layers(SAMPLE_POINTS)
    written = write_points(str(tmp_path / f"out{suffix}"), layers)
    assert written[0] == str(tmp_path / f"out{suffix}")
    if suffix == ".csv":
        assert written[1] == str(tmp_path / "out.classes.csv")
        head = (tmp_path / "out.csv").read_text().splitlines()[0]
        assert head == "Name,Row,Column,Label"
    assert get_reader(written[0]) is read_points_layers
    again = _by_class(read_points_layers(written[0]))
    orig = _by_class(layers)
    assert again.keys() == orig.keys()
    for cid in orig:
        np.testing.assert_array_equal(again[cid][0], orig[cid][0])
        assert again[cid][1:] == orig[cid][1:]


def test_untagged_points_layer_becomes_a_class(tmp_path):
    layers = read_points_layers(SAMPLE_POINTS)
    layers.append((np.array([[5.0, 6.0]]), {"name": "Boats", "metadata": {}}, "points"))
    layers.append((np.array([[7.0, 8.0]]), {"name": "suggestions",
                                            "metadata": {"sseg_suggestions": True}}, "points"))
    path = write_points(str(tmp_path / "pts.json"), layers)[0]
    data = json.loads(open(path).read())
    names = {c["id"]: c["name"] for c in data["classes"]}
    assert names[5] == "Boats"
    pts = data["images"]["dubai_tile2_part005.jpg"]
    assert len(pts) == 31 and {"row": 5.0, "col": 6.0, "label": 5} in pts


def test_write_points_rejects_3d_layers(tmp_path):
    layer = (np.zeros((2, 3)), {"name": "z", "metadata": {"sseg_class_id": 1}}, "points")
    with pytest.raises(ValueError, match="'z' has 3 dimensions"):
        write_points(str(tmp_path / "p.csv"), [layer])
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_labels_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(40, 30)).astype(np.uint8)
    labels[0, :5] = 255
    meta = {"name": "SSeg labels", "metadata": {
        "sseg_classes": {0: "Building", 3: "Vegetation"}, "sseg_colours": {0: "#3c1098"}}}
    path = tmp_path / f"pred_mask{suffix}"
    written = write_labels(str(path), labels, meta)
    assert written == [str(path), str(tmp_path / "pred_mask.classes.json")]
    reader = get_mask_reader(str(path))
    assert reader is read_mask_layer
    (data, lmeta, kind), = reader(str(path))
    assert kind == "labels"
    np.testing.assert_array_equal(data, labels)
    assert lmeta["metadata"]["sseg_classes"] == {0: "Building", 3: "Vegetation"}
    cmap = lmeta["colormap"]
    assert cmap.background_value == 255
    np.testing.assert_allclose(cmap.map(0)[:3], np.array([0x3C, 0x10, 0x98]) / 255, atol=1e-6)
    assert cmap.map(255)[3] == 0  # not annotated: transparent


def test_labels_stack_to_tiff_not_png(tmp_path):
    stack = np.zeros((3, 8, 9), dtype=np.uint16)
    stack[1, 2:4] = 300
    path = write_labels(str(tmp_path / "stack_labels.tif"), stack, {"name": "s"})
    (data, _, _), = read_mask_layer(path[0])
    np.testing.assert_array_equal(data, stack)
    # a grey stack of planes (one page each), not an RGB image: 3 planes, or 3 columns per plane,
    # would otherwise be stored as colour samples
    import tifffile

    thin = np.arange(2 * 8 * 3, dtype=np.uint16).reshape(2, 8, 3)
    thin_path = write_labels(str(tmp_path / "thin_labels.tif"), thin, {"name": "t"})[0]
    for written, planes in ((path[0], stack), (thin_path, thin)):
        with tifffile.TiffFile(written) as tif:
            assert len(tif.pages) == len(planes)
            assert all(page.photometric == tifffile.PHOTOMETRIC.MINISBLACK for page in tif.pages)
            np.testing.assert_array_equal(tif.asarray(), planes)
    with pytest.raises(ValueError, match="save it as .tif"):
        write_labels(str(tmp_path / "stack_labels.png"), stack, {"name": "s"})
    assert not (tmp_path / "stack_labels.png").exists()


def test_get_reader_declines_what_it_does_not_own(tmp_path):
    builtin = tmp_path / "napari_points.csv"  # napari's own points CSV: no class column
    builtin.write_text("index,axis-0,axis-1\n0,1.0,2.0\n")
    table = tmp_path / "table.csv"
    table.write_text("a,b,c\n1,2,3\n")
    binary = tmp_path / "garbage.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    other_json = tmp_path / "config.json"
    other_json.write_text('{"hello": 1}')
    for path in (builtin, table, binary, other_json, tmp_path / "missing.csv", tmp_path,
                 SAMPLE_IMAGE, 12, None, [str(table), str(builtin)]):
        assert get_reader(path) is None
        assert get_reader(str(path)) is None
    napari_cls = tmp_path / "classes_points.csv"
    napari_cls.write_text("index,axis-0,axis-1,class\n0,1.5,2.5,1\n")
    assert get_reader(str(napari_cls)) is read_points_layers
    assert get_reader([str(napari_cls)]) is read_points_layers


def test_get_mask_reader_declines_images(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "mask_rgb.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "photo.png")  # no mask-like name
    (tmp_path / "broken_mask.png").write_bytes(b"\x89PNG not really")
    for path in ("mask_rgb.png", "photo.png", "broken_mask.png", "missing_mask.png"):
        assert get_mask_reader(str(tmp_path / path)) is None
    assert get_mask_reader(str(SAMPLE_IMAGE)) is None


def test_malformed_points_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Name,Row,Column,Label\nimg.png,3,4,1\nimg.png,x,4,1\n")
    reader = get_reader(str(bad))
    assert reader is read_points_layers  # the header is ours; the content is checked on read
    with pytest.raises(ValueError, match=r"bad\.csv: line 3"):
        reader(str(bad))
