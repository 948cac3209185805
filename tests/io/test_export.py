"""``napari-sseg export``: lossless images and pseudo-label masks in the folders and nnU-Net
layouts, low-confidence pixels ignored, point pixels always labelled."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_sseg.cli import main
from napari_sseg.core.sampling import sample_points
from napari_sseg.io.images import read_image, read_label_image


def _survey(tmp_path, n=2, size=80):
    """Two built images (PNG and JPEG) and a CoralNet CSV of 26 points each (every class hit)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    lines = ["Name,Row,Column,Label"]
    truths = {}
    for i in range(n):
        truth = np.ones((size, size), dtype=np.uint8)
        truth[:, size // 2 + i * 5:] = 2
        truth[size // 3: size // 2, : size // 3] = 3
        img = np.stack([np.where(truth == 1, 40, np.where(truth == 2, 200, 120))] * 3, axis=-1)
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        name = f"im{i}.png" if i == 0 else f"im{i}.jpg"
        Image.fromarray(img).save(folder / name)
        pts = sample_points(truth, 25, rng=i)
        # one point in the small class-3 block, which 25 random points may miss
        pts = pts.appended(np.array([[size * 5 // 12, size // 6]]), np.array([3]))
        for (r, c), lab in zip(pts.coords.astype(int), pts.labels):
            lines.append(f"{name},{r},{c},{lab}")
        truths[name] = (truth, pts)
    (tmp_path / "pts.csv").write_text("\n".join(lines) + "\n")
    return folder, tmp_path / "pts.csv", truths


def test_export_folders(tmp_path):
    folder, pts, truths = _survey(tmp_path)
    out = tmp_path / "out"
    assert main(["export", str(folder), "--points", str(pts), "--out", str(out), "-q",
                 "--min-confidence", "0.9"]) == 0
    # lossless: the PNG's own bytes, the JPEG's decoded pixels as PNG
    assert (out / "images" / "im0.png").read_bytes() == (folder / "im0.png").read_bytes()
    np.testing.assert_array_equal(read_image(out / "images" / "im1.png"),
                                  read_image(folder / "im1.jpg"))
    for name, (truth, points) in truths.items():
        mask = read_label_image(out / "masks" / (name.rsplit(".", 1)[0] + ".png"))
        assert mask.dtype == np.uint8 and mask.shape == truth.shape
        assert set(np.unique(mask)) <= {1, 2, 3, 255}
        r, c = points.pixel_indices()
        np.testing.assert_array_equal(mask[r, c], points.labels)  # points always labelled
        sure = mask != 255
        assert (mask[sure] == truth[sure]).mean() > 0.85
    info = json.loads((out / "classes.json").read_text())
    assert [c["id"] for c in info["classes"]] == [1, 2, 3] and info["ignore"] == 255
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "export" and run["summary"]["ok"] == 2
    # nothing is overwritten without --overwrite
    assert main(["export", str(folder), "--points", str(pts), "--out", str(out), "-q"]) == 2


def test_export_nnunet(tmp_path):
    folder, pts, truths = _survey(tmp_path)
    out = tmp_path / "nn"
    assert main(["export", str(folder), "--points", str(pts), "--out", str(out), "-q",
                 "--format", "nnunet", "--min-confidence", "0.9"]) == 0
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "2": 1, "3": 2, "ignore": 3}
    assert ds["file_ending"] == ".png" and ds["numTraining"] == 2
    assert ds["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    for name, (truth, points) in truths.items():
        stem = name.rsplit(".", 1)[0]
        img = read_image(out / "imagesTr" / f"{stem}_0000.png")
        np.testing.assert_array_equal(img, read_image(folder / name))
        lab = read_label_image(out / "labelsTr" / f"{stem}.png")
        assert set(np.unique(lab)) <= {0, 1, 2, 3}
        r, c = points.pixel_indices()
        np.testing.assert_array_equal(lab[r, c], points.labels - 1)  # ids 1..3 -> 0..2


def test_export_bad_input(tmp_path, caplog):
    folder, pts, _ = _survey(tmp_path, n=1)
    out = tmp_path / "o"
    assert main(["export", str(folder), "--points", str(pts), "--out", str(out), "-q",
                 "--min-confidence", "2"]) == 2
    assert "--min-confidence must be in [0, 1]" in caplog.text
    (tmp_path / "big.csv").write_text("Name,Row,Column,Label\nim0.png,3,3,300\n")
    assert main(["export", str(folder), "--points", str(tmp_path / "big.csv"), "--out",
                 str(out), "-q"]) == 2
    assert "class id 300 does not fit" in caplog.text
    assert not out.exists()


def test_export_target_ignores_low_confidence_but_never_points():
    from napari_sseg.core.points import PointSet
    from napari_sseg.io.export import export_target

    labels = np.array([[1, 1, 2], [2, 2, 2]], dtype=np.uint8)
    conf = np.array([[0.9, 0.4, 0.8], [0.3, 0.95, 0.5]], dtype=np.float32)
    pts = PointSet([[1, 0]], [3])  # a point where the expansion is unsure (and disagrees)
    mask = export_target(labels, conf, pts, min_confidence=0.6, ignore=255)
    assert mask.tolist() == [[1, 255, 2], [3, 2, 255]]
    assert export_target(labels, conf, pts, min_confidence=0, ignore=255).tolist() == [
        [1, 1, 2], [3, 2, 2]]
    assert labels.tolist() == [[1, 1, 2], [2, 2, 2]]  # the caller's array is untouched


@pytest.mark.parametrize("layout", ["folders", "nnunet"])
def test_export_outputs_names(layout):
    from napari_sseg.io.export import export_outputs

    img, mask = export_outputs("a", ".JPG", layout)
    assert (img, mask) == (("images/a.png", "masks/a.png") if layout == "folders" else
                           ("imagesTr/a_0000.png", "labelsTr/a.png"))
