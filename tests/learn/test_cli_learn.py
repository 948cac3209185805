"""``napari-sseg train / predict / expand --survey-model`` end to end on built images, and their
bad input: each a clear error naming the file, nothing half-written."""

from __future__ import annotations

import json

import pytest
from conftest import built_image
from PIL import Image

from napari_sseg.cli import main
from napari_sseg.core.sampling import sample_points
from napari_sseg.io.images import read_label_image


@pytest.fixture
def survey(tmp_path):
    """Three built RGB images, their masks and a CoralNet CSV of 30 points each."""
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    lines = ["Name,Row,Column,Label"]
    for s in range(3):
        img, truth = built_image(s, size=80)
        Image.fromarray(img).save(imgs / f"s{s}.png")
        Image.fromarray(truth).save(masks / f"s{s}.png")
        pts = sample_points(truth, 30, rng=s)
        lines += [f"s{s}.png,{r},{c},{lab}" for (r, c), lab in
                  zip(pts.coords.astype(int), pts.labels)]
    (tmp_path / "pts.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_train_predict_and_expand_with_the_model(survey, caplog):
    t = survey
    assert main(["train", str(t / "imgs"), "--points", str(t / "pts.csv"), "--labels", "points",
                 "--out", str(t / "model"), "-q"]) == 0
    card = json.loads((t / "model" / "card.json").read_text())
    assert card["kind"] == "forest" and card["training"]["labels"] == "points"
    assert [c["id"] for c in card["classes"]] == [1, 2, 3]
    # the model exists: a second train is refused without --overwrite
    assert main(["train", str(t / "imgs"), "--masks", str(t / "masks"), "--out",
                 str(t / "model"), "-q"]) == 2
    assert "holds a model already" in caplog.text

    new = t / "new"
    new.mkdir()
    img, truth = built_image(8, size=80)
    Image.fromarray(img).save(new / "n.png")
    out = t / "pred"
    assert main(["predict", str(new), "--model", str(t / "model"), "--out", str(out),
                 "--confidence", "-q"]) == 0
    labels = read_label_image(out / "n.png")
    assert labels.shape == truth.shape and (labels == truth).mean() > 0.8
    assert (out / "n_overlay.png").is_file() and (out / "n_confidence.tif").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "predict" and run["summary"]["ok"] == 1

    # expand with the survey model as the third expert
    (t / "one.csv").write_text("Name,Row,Column,Label\n" + "\n".join(
        f"n.png,{r},{c},{lab}" for (r, c), lab in
        zip(sample_points(truth, 12, rng=5).coords.astype(int),
            sample_points(truth, 12, rng=5).labels)) + "\n")
    assert main(["expand", str(new), "--points", str(t / "one.csv"), "--out", str(t / "exp"),
                 "--survey-model", str(t / "model"), "--backend", "superpixel", "-q"]) == 0
    run = json.loads((t / "exp" / "run.json").read_text())
    assert run["settings"]["survey_model"] == str(t / "model")
    assert (read_label_image(t / "exp" / "n.png") == truth).mean() > 0.8


def test_bad_input_names_the_file(survey, caplog):
    t = survey
    assert main(["train", str(t / "imgs"), "--masks", str(t / "masks"), "--out",
                 str(t / "model"), "-q"]) == 0
    # points whose classes the model does not know
    (t / "odd.csv").write_text("Name,Row,Column,Label\ns0.png,3,3,9\n")
    assert main(["expand", str(t / "imgs" / "s0.png"), "--points", str(t / "odd.csv"), "--out",
                 str(t / "e"), "--survey-model", str(t / "model"), "-q"]) == 2
    assert "odd.csv: class id(s) [9] are not among the classes" in caplog.text
    assert not (t / "e").exists()
    # a grey image for an RGB model: that image fails, named, the run goes on
    grey = t / "grey"
    grey.mkdir()
    Image.fromarray(built_image(1, size=80, grey=True)[0]).save(grey / "g.png")
    assert main(["predict", str(grey), "--model", str(t / "model"), "--out", str(t / "p"),
                 "-q"]) == 1
    run = json.loads((t / "p" / "run.json").read_text())
    assert "g.png: 1 channel(s), but" in run["images"][0]["error"]
    assert not (t / "p" / "g.png").exists()
    # a truncated model file
    f = t / "model" / "forest.npz"
    f.write_bytes(f.read_bytes()[:100])
    assert main(["predict", str(t / "imgs"), "--model", str(t / "model"), "--out",
                 str(t / "q"), "-q"]) == 2
    assert "forest.npz: does not match the digest" in caplog.text
    assert not (t / "q").exists()
    # an empty training set: no image has points
    (t / "none.csv").write_text("Name,Row,Column,Label\nother.png,3,3,1\n")
    assert main(["train", str(t / "imgs"), "--points", str(t / "none.csv"), "--out",
                 str(t / "m2"), "-q"]) == 2
    assert "empty training set" in caplog.text
    assert not (t / "m2").exists()
