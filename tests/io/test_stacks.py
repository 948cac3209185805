"""Stacks: axes of TIFF stacks, points with planes, ambiguous inputs, the per-stack task."""

import json

import numpy as np
import pytest
import tifffile

from napari_sseg.core.points import PointSet
from napari_sseg.io.images import ImageReadError, read_image, read_image_axes, write_label_stack
from napari_sseg.io.points_files import (
    PointsFileError,
    read_points_file,
    write_napari_points_csv,
    write_points_json,
)
from napari_sseg.stacks import check_stack_points, expand_stack, points_to_inputs


def test_multipage_grey_tiff_is_a_stack(tmp_path):
    vol = np.arange(10 * 8 * 9, dtype=np.uint8).reshape(10, 8, 9)
    tifffile.imwrite(tmp_path / "s.tif", vol, photometric="minisblack")
    read = read_image_axes(tmp_path / "s.tif")
    assert read.axes == "ZYX" and read.note == ""
    np.testing.assert_array_equal(read.data, vol)
    # the 2D reader refuses it, saying what it is (it used to read 10 rows x 8 cols x 9 channels)
    with pytest.raises(ImageReadError, match="stack of 10 planes of 8 x 9"):
        read_image(tmp_path / "s.tif")


def test_three_pages_are_planes_with_a_note_and_axes_say_otherwise(tmp_path):
    vol = np.stack([np.full((8, 9), v, np.uint8) for v in (10, 20, 30)])
    tifffile.imwrite(tmp_path / "t.tif", vol, photometric="minisblack")
    read = read_image_axes(tmp_path / "t.tif")
    assert read.axes == "ZYX" and read.data.shape == (3, 8, 9)
    assert "read as a stack of 3 planes" in read.note and "--axes CYX" in read.note
    as_rgb = read_image_axes(tmp_path / "t.tif", axes="CYX")
    assert as_rgb.axes == "YXC" and as_rgb.data.shape == (8, 9, 3)
    assert as_rgb.data[0, 0].tolist() == [10, 20, 30]
    with pytest.raises(ImageReadError, match="--axes ZYXC has 4 letters.*shape \\(3, 8, 9\\)"):
        read_image_axes(tmp_path / "t.tif", axes="ZYXC")


def test_rgb_tiff_stays_colour_and_png_channels_can_be_planes(tmp_path):
    from PIL import Image

    rgb = np.zeros((8, 9, 3), np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    read = read_image_axes(tmp_path / "c.tif")
    assert read.axes == "YXC" and read.note == ""  # the file says RGB
    Image.fromarray(rgb).save(tmp_path / "c.png")
    planes = read_image_axes(tmp_path / "c.png", axes="YXZ")
    assert planes.axes == "ZYX" and planes.data.shape == (3, 8, 9)


def test_ome_tiff_axes(tmp_path):
    arr = np.zeros((4, 2, 8, 9), np.uint16)
    arr[:, 1] = 7
    tifffile.imwrite(tmp_path / "o.ome.tif", arr, metadata={"axes": "ZCYX"})
    read = read_image_axes(tmp_path / "o.ome.tif")
    assert read.axes == "ZYXC" and read.data.shape == (4, 8, 9, 2)
    assert (read.data[..., 1] == 7).all()


def test_three_axis_napari_csv_and_json_plane_roundtrip(tmp_path):
    pts = PointSet([[1.5, 2], [3, 4]], [1, 2], planes=[0, 4])
    write_napari_points_csv(tmp_path / "p.csv", pts)
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "index,axis-0,axis-1,axis-2,label"
    back = read_points_file(tmp_path / "p.csv")
    assert back.ndim == 3
    assert back.points[None].planes.tolist() == [0, 4]
    assert back.points[None].coords.tolist() == [[1.5, 2], [3, 4]]
    write_points_json(tmp_path / "p.json", {None: pts})
    j = read_points_file(tmp_path / "p.json")
    assert j.points[None].planes.tolist() == [0, 4] and j.ndim == 3


def test_bad_planes_in_points_files_name_the_line(tmp_path):
    (tmp_path / "a.csv").write_text("axis-0,axis-1,axis-2,label\n0,1,2,1\n2.5,1,2,1\n")
    with pytest.raises(PointsFileError, match="line 3: axis-0 '2.5' is not a plane index"):
        read_points_file(tmp_path / "a.csv")
    data = {"points": [{"row": 1, "col": 2, "label": 1, "plane": 0}, {"row": 1, "col": 2,
                                                                      "label": 1}]}
    (tmp_path / "b.json").write_text(json.dumps(data))
    with pytest.raises(PointsFileError, match=r"points\[1\]: no 'plane', but other points"):
        read_points_file(tmp_path / "b.json")


def test_ambiguous_and_mismatched_inputs_get_clear_messages(tmp_path):
    vol = np.zeros((5, 8, 9), np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", vol, photometric="minisblack")
    read = read_image_axes(tmp_path / "v.tif")
    flat = PointSet([[1, 1]], [1])
    with pytest.raises(ValueError, match=r"v.tif was read as a stack of 5 planes of 8 x 9 "
                                         r"\(axes ZYX\), but p.csv has 2D points.*--axes CYX"):
        check_stack_points(read, flat, image="v.tif", points_name="p.csv")
    beyond = PointSet([[1, 1], [2, 2]], [1, 1], planes=[0, 7])
    with pytest.raises(ValueError, match=r"planes beyond the stack of 5 planes.*#1 \(plane 7\)"):
        check_stack_points(read, beyond, image="v.tif", points_name="p.csv")
    img = read_image_axes(tmp_path / "v.tif", axes="CYX")
    with pytest.raises(ValueError, match=r"read as a 2D image of 8 x 9 with 5 channels.*"
                                         r"points with planes.*--axes, Z for that axis"):
        check_stack_points(img, PointSet([[1, 1]], [1], planes=[0]), image="v.tif",
                           points_name="p.csv")


def test_label_stack_is_grey_pages(tmp_path):
    lab = np.zeros((3, 8, 9), np.uint8)
    lab[1] = 2
    write_label_stack(tmp_path / "l.tif", lab)
    with tifffile.TiffFile(tmp_path / "l.tif") as tf:
        assert len(tf.pages) == 3
        assert all(int(p.photometric) == 1 for p in tf.pages)  # minisblack
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "l.tif"), lab)


def test_expand_stack_task_writes_one_page_per_plane(tmp_path):
    rr, cc = np.mgrid[0:40, 0:40]
    vol = np.stack([np.where(cc < 15 + 3 * z, 200, 40).astype(np.uint8) for z in range(4)])
    tifffile.imwrite(tmp_path / "v.tif", vol, photometric="minisblack")
    pts = PointSet([[20, 5], [5, 35], [35, 35], [20, 30]], [1, 2, 2, 2], planes=[0, 0, 0, 0])
    out = tmp_path / "out"
    out.mkdir()
    rec = expand_stack({"image": str(tmp_path / "v.tif"), "points": points_to_inputs(pts),
                        "labels_out": "v.tif", "spacing": [2, 1, 1]}, out)
    assert rec["planes"] == 4 and rec["axes"] == "ZYX"
    lab = tifffile.imread(out / "v.tif")
    assert lab.shape == (4, 40, 40)
    truth = np.where(cc < 15 + 3 * np.arange(4)[:, None, None], 1, 2)
    assert (lab == truth).mean() > 0.95


def test_cli_expand_stack_and_its_refusals(tmp_path, capsys):
    from napari_sseg.cli import main
    from napari_sseg.io.points_files import write_napari_points_csv as write_csv

    cc = np.arange(40)[None, None, :]
    vol = np.broadcast_to(np.where(cc < 20, 200, 40), (3, 40, 40)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", vol, photometric="minisblack")
    pts = PointSet([[20, 5], [5, 35], [35, 30], [10, 10]], [1, 2, 2, 1], planes=[1, 1, 1, 1])
    write_csv(tmp_path / "p3.csv", pts)
    write_csv(tmp_path / "p2.csv", PointSet(pts.coords, pts.labels))
    assert main(["expand", str(tmp_path / "v.tif"), "--points", str(tmp_path / "p3.csv"),
                 "--out", str(tmp_path / "o"), "--spacing", "4", "1", "1"]) == 0
    err = capsys.readouterr().err
    assert "read as a stack of 3 planes of 40 x 40 (axes ZYX); if that is wrong, pass " \
           "--axes CYX" in err
    lab = tifffile.imread(tmp_path / "o" / "v.tif")
    assert lab.shape == (3, 40, 40)
    assert (lab[:, :, :20] == 1).mean() > 0.95 and (lab[:, :, 20:] == 2).mean() > 0.95
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["settings"]["spacing"] == [4.0, 1.0, 1.0]
    # a 2D points file for the stack: refused before anything is written
    assert main(["expand", str(tmp_path / "v.tif"), "--points", str(tmp_path / "p2.csv"),
                 "--out", str(tmp_path / "o2")]) == 2
    assert "has 2D points (row, col) without planes" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    # the same pages said to be channels: a 2D image, and the 3-axis points then refused
    assert main(["expand", str(tmp_path / "v.tif"), "--points", str(tmp_path / "p3.csv"),
                 "--out", str(tmp_path / "o3"), "--axes", "CYX"]) == 2
    assert "read as a 2D image of 40 x 40 with 3 channels" in capsys.readouterr().err


def test_cli_simulate_stacks_scores_planes_with_and_without_points(tmp_path):
    from napari_sseg.cli import main

    rng = np.random.default_rng(0)
    cc = np.arange(40)[None, :]
    gt = np.stack([np.broadcast_to(np.where(cc < 18 + z, 1, 2), (40, 40))
                   for z in range(4)]).astype(np.uint8)
    vol = np.clip(np.where(gt == 1, 190, 50) + rng.normal(0, 8, gt.shape), 0, 255)
    (tmp_path / "im").mkdir()
    (tmp_path / "gt").mkdir()
    tifffile.imwrite(tmp_path / "im" / "s.tif", vol.astype(np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "gt" / "s.tif", gt, photometric="minisblack")
    assert main(["simulate", "--images", str(tmp_path / "im"), "--ground-truth",
                 str(tmp_path / "gt"), "--points-per-plane", "10", "--every", "2",
                 "--seeds", "0", "--out", str(tmp_path / "o"), "-q"]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["every"] == 2 and m["points_per_plane"] == 10
    assert m["planes_with_points"]["miou"] > 0.9
    assert m["planes_without_points"]["miou"] > 0.9


def test_napari_reader_keeps_the_planes_of_a_3_axis_points_file(tmp_path):
    from napari_sseg._reader import read_points_layers

    write_napari_points_csv(tmp_path / "p.csv", PointSet([[1, 2], [3, 4], [5, 6]], [1, 2, 1],
                                                         planes=[0, 4, 2]))
    layers = read_points_layers(str(tmp_path / "p.csv"))
    by_name = {kw["name"]: data for data, kw, _ in layers}
    np.testing.assert_array_equal(by_name["class 1"], [[0, 1, 2], [2, 5, 6]])
    np.testing.assert_array_equal(by_name["class 2"], [[4, 3, 4]])
