"""Corrections files: partial label images read and written with clear errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sseg.io import write_label_image
from napari_sseg.io.corrections import (
    CorrectionsFileError,
    corrections_file,
    read_corrections,
    write_corrections,
)


def test_round_trip_8_and_16_bit(tmp_path):
    corr = np.full((30, 40), 255, np.uint8)
    corr[5:10, 5:15] = 3
    corr[20, 30] = 0  # class 0 is a real class
    path = write_corrections(tmp_path / "a.png", corr)
    back = read_corrections(path, (30, 40), classes=[0, 1, 2, 3])
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, corr)
    # a class table up to id 300: 16-bit file, 65535 = not corrected
    path16 = write_corrections(tmp_path / "b.png", corr, max_id=300)
    back16 = read_corrections(path16, (30, 40))
    assert back16.dtype == np.uint16
    assert (back16 == 65535).sum() == (corr == 255).sum()
    np.testing.assert_array_equal(back16[corr != 255], corr[corr != 255])
    # signed in-memory corrections (-1 = none) are written in the same format
    signed = np.where(corr == 255, -1, corr).astype(np.int32)
    np.testing.assert_array_equal(read_corrections(write_corrections(tmp_path / "c.png", signed)),
                                  corr)


def test_corrections_file_lookup(tmp_path):
    assert corrections_file(tmp_path, "x/img_01.jpg") is None
    write_corrections(tmp_path / "img_01.png", np.full((4, 4), 255, np.uint8))
    assert corrections_file(tmp_path, "x/img_01.jpg") == tmp_path / "img_01.png"


def test_bad_files_are_clear_errors(tmp_path):
    path = write_corrections(tmp_path / "a.png", np.full((30, 40), 255, np.uint8))
    with pytest.raises(CorrectionsFileError,
                       match=r"a\.png: corrections of 30 rows x 40 columns do not match the "
                             r"image of 31 rows x 40 columns"):
        read_corrections(path, (31, 40))
    bad_ids = np.full((30, 40), 255, np.uint8)
    bad_ids[0, 0] = 9
    write_corrections(path, bad_ids)
    with pytest.raises(CorrectionsFileError, match=r"a\.png: painted class id\(s\) 9 are not among"):
        read_corrections(path, (30, 40), classes=[0, 1])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(CorrectionsFileError, match=r"junk\.png: cannot read"):
        read_corrections(junk, (30, 40))
    rgb = tmp_path / "rgb.png"
    from PIL import Image

    Image.fromarray(np.dstack([np.zeros((5, 5), np.uint8), np.ones((5, 5), np.uint8),
                               np.full((5, 5), 2, np.uint8)])).save(rgb)
    with pytest.raises(CorrectionsFileError, match=r"rgb\.png: expected a single-channel"):
        read_corrections(rgb)
    with pytest.raises(CorrectionsFileError, match="no such"):
        read_corrections(tmp_path / "missing.png")


def test_cli_expand_with_corrections(tmp_path):
    from napari_sseg.cli import main

    rng = np.random.default_rng(0)
    img = np.full((60, 80), 40.0)
    img[:, 40:] = 200.0
    img[35:55, 5:25] = 200.0  # a bright square on the dark side: the points miss it
    img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "corr").mkdir()
    write_label_image(tmp_path / "imgs" / "a.png", img)
    write_label_image(tmp_path / "imgs" / "b.png", img)
    (tmp_path / "pts.csv").write_text("Name,Row,Column,Label\na.png,10,10,1\na.png,30,60,2\n"
                                      "b.png,10,10,1\nb.png,30,60,2\n")
    corr = np.full(img.shape, 255, np.uint8)
    corr[40:50, 10:20] = 3  # a class without points: known from the class table only
    write_corrections(tmp_path / "corr" / "a.png", corr)
    args = ["expand", str(tmp_path / "imgs"), "--points", str(tmp_path / "pts.csv"),
            "--corrections", str(tmp_path / "corr"), "-q"]
    rc = main(args + ["--out", str(tmp_path / "out0")])
    assert rc == 1  # without the table, 3 is an unknown class id
    (tmp_path / "classes.csv").write_text("id,name\n1,dark\n2,bright\n3,square\n")
    rc = main(args + ["--classes", str(tmp_path / "classes.csv"), "--out", str(tmp_path / "out")])
    assert rc == 0
    from napari_sseg.io import read_label_image

    a = read_label_image(tmp_path / "out" / "a.png")
    b = read_label_image(tmp_path / "out" / "b.png")  # no corrections file: points only
    assert (a[40:50, 10:20] == 3).all() and (a[35:55, 5:25] == 3).mean() > 0.8
    assert (b == 3).sum() == 0
    # a corrections file of the wrong size fails that image only, naming the file
    write_corrections(tmp_path / "corr" / "a.png", np.full((10, 10), 255, np.uint8))
    rc = main(args + ["--out", str(tmp_path / "out2")])
    assert rc == 1
    import json

    run = json.loads((tmp_path / "out2" / "run.json").read_text())
    status = {r["image"]: r for r in run["images"]}
    assert status["b.png"]["status"] == "ok" and status["a.png"]["status"] == "failed"
    assert "corr/a.png: corrections of 10 rows x 10 columns do not match" in status["a.png"]["error"]


def test_cli_simulate_correction_rounds(tmp_path):
    import json

    from napari_sseg.cli import main

    rng = np.random.default_rng(1)
    img = np.full((60, 80), 110.0)
    gt = np.ones((60, 80), np.uint8)
    img[10:40, 10:40] = 30.0
    gt[10:40, 10:40] = 2
    img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    for d, arr in (("imgs", img), ("gt", gt)):
        (tmp_path / d).mkdir()
        write_label_image(tmp_path / d / "a.png", arr)
    rc = main(["simulate", "--images", str(tmp_path / "imgs"), "--ground-truth",
               str(tmp_path / "gt"), "--points-per-image", "3", "--seeds", "0",
               "--corrections", "2", "--stroke-radius", "4", "--out", str(tmp_path / "out"),
               "-q"])
    assert rc == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())["corrections"]
    assert m["rounds"] == 2 and m["stroke_radius"] == 4.0 and m["painted_kept_min"] == 1.0
    assert len(m["refined_miou"]) == len(m["manual_miou"]) == 3
    assert m["refined_miou"][0] == m["manual_miou"][0]
    assert m["refined_miou"][-1] >= m["manual_miou"][-1]
