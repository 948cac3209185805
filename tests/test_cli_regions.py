"""``napari-sseg regions`` on real image crops and carefully built bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sseg.cli import main
from napari_sseg.io import read_image, read_label_image, write_rgb

STEMS = ("tile1_image_part_001", "tile1_image_part_002")


@pytest.fixture(scope="module")
def crops(shared_data, tmp_path_factory):
    """Two 120 x 150 crops of real aerial tiles as PNG files."""
    root = tmp_path_factory.mktemp("regions_in")
    for stem in STEMS:
        img = read_image(shared_data / "aerial_dubai" / "images" / f"{stem}.jpg")[:120, :150]
        write_rgb(root / f"{stem}.png", img)
    return root


def test_writes_one_16bit_png_per_k_with_about_k_regions(crops, tmp_path):
    out = tmp_path / "out"
    assert main(["regions", str(crops), "--regions", "50", "10", "--out", str(out), "-q"]) == 0
    for stem in STEMS:
        coarse = read_label_image(out / f"{stem}_r10.png")
        fine = read_label_image(out / f"{stem}_r50.png")
        assert coarse.dtype == np.uint16 and coarse.shape == (120, 150)
        np.testing.assert_array_equal(np.unique(coarse), np.arange(1, 11))
        np.testing.assert_array_equal(np.unique(fine), np.arange(1, 51))
        # the two cuts are nested: each fine region lies in one coarse region
        pairs = np.unique(np.stack([fine.ravel(), coarse.ravel()]), axis=1)
        assert pairs.shape[1] == 50
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "regions" and run["state"] == "finished"
    assert [e["status"] for e in run["images"]] == ["ok", "ok"]
    assert run["images"][0]["regions"] == {"10": 10, "50": 50}
    assert {o["path"] for o in run["images"][0]["outputs"]} == {
        f"{STEMS[0]}_r10.png", f"{STEMS[0]}_r50.png"}


def test_refuses_to_overwrite_and_k_below_two(crops, tmp_path, caplog):
    out = tmp_path / "out"
    image = str(crops / f"{STEMS[0]}.png")
    assert main(["regions", image, "--regions", "1", "--out", str(out)]) == 2
    assert "at least 2, got 1" in caplog.text
    assert not out.exists()
    assert main(["regions", image, "--regions", "5", "--out", str(out), "-q"]) == 0
    first = (out / f"{STEMS[0]}_r5.png").read_bytes()
    assert main(["regions", image, "--regions", "5", "--out", str(out)]) == 2
    assert "refusing to overwrite" in caplog.text
    assert (out / f"{STEMS[0]}_r5.png").read_bytes() == first


def test_too_many_regions_fails_that_image_by_name(tmp_path, caplog):
    small = tmp_path / "in"
    small.mkdir()
    rng = np.random.default_rng(0)
    write_rgb(small / "tiny.png", rng.integers(0, 255, (6, 7, 3), dtype=np.uint8))
    write_rgb(small / "big.png", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["regions", str(small), "--regions", "100", "--out", str(out)]) == 1
    assert "tiny.png: cannot cut 100 regions from an image of 6 x 7 = 42 pixels" in caplog.text
    assert not (out / "tiny_r100.png").exists()
    assert read_label_image(out / "big_r100.png").max() == 100
    run = json.loads((out / "run.json").read_text())
    assert {e["key"]: e["status"] for e in run["images"]} == {"big.png": "ok", "tiny.png": "failed"}


def test_unreadable_image_is_named(tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    assert main(["regions", str(folder), "--regions", "10", "--out", str(tmp_path / "o")]) == 1
    assert "broken.png" in caplog.text
