"""Image reading (real and corrupt files), label and overlay writing, atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from napari_sseg.io import (
    ClassTable,
    ImageReadError,
    atomic_open,
    atomic_write_json,
    list_images,
    overlay_rgb,
    read_image,
    read_label_image,
    write_label_image,
    write_overlay,
)

AERIAL = "aerial_dubai/images/tile1_image_part_001.jpg"


def test_reads_a_real_jpeg_and_mask(shared_data):
    img = read_image(shared_data / AERIAL)
    assert img.shape == (644, 797, 3) and img.dtype == np.uint8
    mask = read_label_image(shared_data / "aerial_dubai/masks/tile1_image_part_001.png")
    assert mask.shape == (644, 797) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 4, 5, 255}


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_images_give_an_error_naming_the_file(shared_data, tmp_path, suffix):
    src = read_image(shared_data / AERIAL)
    good = tmp_path / f"good{suffix}"
    Image.fromarray(src).save(good)
    data = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"{bad}: cannot read image"):
        read_image(bad)


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="x.png: cannot read image"):
        read_image(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match="nope.tif: no such image file"):
        read_image(tmp_path / "nope.tif")
    with pytest.raises(ImageReadError, match="x.png: cannot read label image"):
        read_label_image(tmp_path / "x.png")


def test_label_png_is_uint8_below_256_else_16_bit(tmp_path):
    small = np.array([[0, 1], [2, 255]], dtype=np.int64)
    write_label_image(tmp_path / "s.png", small)
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode == "L"
    back = read_label_image(tmp_path / "s.png")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, small)

    big = np.array([[0, 256], [1000, 65535]], dtype=np.int32)
    write_label_image(tmp_path / "b.png", big)
    with Image.open(tmp_path / "b.png") as im:
        assert im.mode.startswith("I")
    back = read_label_image(tmp_path / "b.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, big)

    # max_id keeps one dtype over a batch
    write_label_image(tmp_path / "m.png", small, max_id=300)
    assert read_label_image(tmp_path / "m.png").dtype == np.uint16

    with pytest.raises(ValueError, match="does not fit a 16-bit PNG"):
        write_label_image(tmp_path / "x.png", np.array([[0, 70000]]))
    with pytest.raises(ValueError, match="non-negative"):
        write_label_image(tmp_path / "x.png", np.array([[0, -1]]))
    assert not (tmp_path / "x.png").exists()


def test_label_tiff_roundtrip(tmp_path):
    lab = np.array([[0, 70000], [3, 4]], dtype=np.int64)
    write_label_image(tmp_path / "l.tif", lab)
    back = read_label_image(tmp_path / "l.tif")
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, lab)


def test_palette_and_grey_rgb_masks_read_as_indices(tmp_path):
    idx = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * (256 * 3 - 12))
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "p.png"), idx)
    # the same palette file read as an image gives colours
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[0, 0], [255, 0, 0])
    Image.fromarray(np.repeat(idx[:, :, None], 3, axis=2)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "g.png"), idx)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 5
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.raises(ImageReadError, match="expected a single-channel class-index image"):
        read_label_image(tmp_path / "c.png")


def test_channel_first_tiff_and_16_bit_grey(tmp_path):
    import tifffile

    arr = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    tifffile.imwrite(tmp_path / "cf.tif", arr, photometric="rgb", planarconfig="separate")
    img = read_image(tmp_path / "cf.tif")
    assert img.shape == (20, 30, 3)
    np.testing.assert_array_equal(img[..., 1], arr[1])
    grey = (np.arange(600, dtype=np.uint16) * 100).reshape(20, 30)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    back = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(back, grey)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 6, 7, 8), np.uint8))
    with pytest.raises(ImageReadError, match="expected a 2D image"):
        read_image(tmp_path / "stack.tif")


def test_overlay_blends_class_colours(tmp_path):
    img = np.full((4, 5, 3), 100, np.uint8)
    lab = np.zeros((4, 5), np.uint8)
    lab[:, 3:] = 2
    table = ClassTable({2: "b"}, {0: (0, 0, 0), 2: (200, 0, 50)})
    ov = overlay_rgb(img, lab, table, alpha=0.5)
    assert ov.dtype == np.uint8 and ov.shape == (4, 5, 3)
    np.testing.assert_array_equal(ov[0, 0], [50, 50, 50])
    np.testing.assert_array_equal(ov[0, 4], [150, 50, 75])
    p = write_overlay(tmp_path / "o.png", img, lab, table)
    np.testing.assert_array_equal(read_image(p), ov)
    with pytest.raises(ValueError, match="differ"):
        overlay_rgb(img, lab[:3], table)


def test_list_images_filters_and_sorts(tmp_path):
    for n in ("b.PNG", "a.jpg", "c.txt", ".hidden.png", "d.tiff"):
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "d.tiff"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_open(target, "wb") as fh:
            fh.write(b"half written")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.json"]  # no temporary file left behind


def test_failed_label_write_leaves_no_partial_png(tmp_path, monkeypatch):
    target = tmp_path / "l.png"
    write_label_image(target, np.ones((8, 8), np.uint8))
    before = target.read_bytes()

    def boom(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_label_image(target, np.zeros((8, 8), np.uint8))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["l.png"]


def test_json_writer_turns_nan_into_null(tmp_path):
    p = atomic_write_json(tmp_path / "m.json", {"miou": float("nan"), "x": np.float32(0.5),
                                                "a": np.arange(2)})
    assert p.read_text() == '{\n  "miou": null,\n  "x": 0.5,\n  "a": [\n    0,\n    1\n  ]\n}\n'
