"""The forest survey model: it learns built images, saves and loads safely, predicts in tiles,
and every bad input is a clear error naming the file with nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import built_image

from napari_sseg.core.metrics import ConfusionMatrix
from napari_sseg.core.points import PointSet
from napari_sseg.core.sampling import sample_points
from napari_sseg.learn import ModelError, load_model
from napari_sseg.learn.dataset import TrainingItem, sample_pixels, target_from_mask
from napari_sseg.learn.train import TrainOptions, train

FAST = dict(n_trees=20, pixels_per_image=1500, validation_fraction=0.0)


def _miou(truth, labels):
    cm = ConfusionMatrix()
    cm.update(truth, labels)
    return cm.scores()["miou"]


def _items(seeds, *, labels="mask", n_points=25, grey=False, tmp=None):
    items = []
    for s in seeds:
        img, truth = built_image(s, grey=grey)
        pts = sample_points(truth, n_points, rng=s)
        items.append(TrainingItem(f"built{s}.png", points=pts, image=img,
                                  mask=None if tmp is None else _save_mask(tmp, s, truth)))
    return items


def _save_mask(tmp, s, truth):
    from napari_sseg.io.images import write_label_image

    return write_label_image(tmp / f"built{s}_mask.png", truth)


@pytest.mark.parametrize("labels", ["mask", "points", "expanded"])
def test_forest_learns_built_images(tmp_path, labels):
    items = _items(range(3), tmp=tmp_path)
    card = train(items, tmp_path / "model", options=TrainOptions(labels=labels, **FAST))
    assert [c["id"] for c in card["classes"]] == [1, 2, 3]
    model = load_model(tmp_path / "model")
    img, truth = built_image(7)  # an image the model has not seen, regions elsewhere
    labels_out, conf = model.predict(img)
    assert labels_out.shape == truth.shape and conf.dtype == np.float32
    assert _miou(truth, labels_out) > 0.8
    assert 0 <= conf.min() and conf.max() <= 1


def test_card_round_trip_and_same_predictions(tmp_path):
    items = _items(range(2), tmp=tmp_path)
    card = train(items, tmp_path / "m", options=TrainOptions(labels="mask", **FAST),
                 class_names={1: "bright", 2: "dark", 3: "striped"})
    on_disk = json.loads((tmp_path / "m" / "card.json").read_text())
    for key in ("kind", "classes", "channels", "features", "normalisation", "training",
                "validation", "versions", "format_version", "files"):
        assert key in on_disk
    assert on_disk["classes"] == card["classes"]
    assert [c["name"] for c in on_disk["classes"]] == ["bright", "dark", "striped"]
    assert on_disk["channels"] == 3 and on_disk["kind"] == "forest"
    assert on_disk["training"]["images"] == ["built0.png", "built1.png"]
    assert on_disk["versions"]["sklearn"]
    model = load_model(tmp_path / "m")
    assert model.class_names == {1: "bright", 2: "dark", 3: "striped"}
    img, _ = built_image(11)
    a = model.predict(img)
    b = load_model(tmp_path / "m").predict(img)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_tiles_give_the_whole_image_prediction(tmp_path):
    train(_items(range(2), tmp=tmp_path), tmp_path / "m",
          options=TrainOptions(labels="mask", **FAST))
    model = load_model(tmp_path / "m")
    img = np.concatenate([built_image(3)[0], built_image(4)[0]], axis=1)  # 96 x 192
    whole = model.predict(img)
    model.tile = 40  # many tiles, each with its halo
    tiled = model.predict(img)
    np.testing.assert_array_equal(whole[0], tiled[0])
    np.testing.assert_allclose(whole[1], tiled[1], atol=1e-5)
    proba, f = model.predict_proba(img)
    assert f == 1 and proba.shape == (96, 192, 3)
    np.testing.assert_allclose(proba.sum(axis=2), 1, atol=1e-5)


def test_ignore_index_pixels_teach_nothing(tmp_path):
    from napari_sseg.io.images import write_label_image

    items = []
    for s in range(2):
        img, truth = built_image(s)
        mask = truth.copy()
        mask[truth == 3] = 255  # the striped class is not annotated
        items.append(TrainingItem(f"b{s}.png", image=img,
                                  mask=write_label_image(tmp_path / f"b{s}.png", mask)))
    card = train(items, tmp_path / "m", options=TrainOptions(labels="mask", **FAST))
    assert [c["id"] for c in card["classes"]] == [1, 2]
    assert set(card["training"]["pixels_per_class"]) == {1, 2}
    target = target_from_mask(np.array([[1, 255], [2, 255]], dtype=np.uint8))
    assert target.tolist() == [[1, -1], [2, -1]]


def test_sample_pixels_balances_classes():
    target = np.full((50, 50), -1, dtype=np.int32)
    target[:40] = 0          # 2000 pixels
    target[40:, :5] = 1      # 50 pixels
    rows, cols, lab = sample_pixels(target, 400, np.random.default_rng(0))
    assert (target[rows, cols] == lab).all()
    assert (lab == 1).sum() == 50 and (lab == 0).sum() == 350
    assert len(set(zip(rows.tolist(), cols.tolist()))) == lab.size  # no pixel twice


def test_sample_pixels_in_proportion_to_area():
    target = np.full((50, 50), -1, dtype=np.int32)
    target[:40] = 0          # 2000 pixels
    target[40:, :10] = 1     # 100 pixels
    rows, cols, lab = sample_pixels(target, 420, np.random.default_rng(0), balanced=False)
    assert lab.size == 420 and (target[rows, cols] == lab).all()
    assert 8 <= (lab == 1).sum() <= 35  # about 420 / 21 = 20, not half of them
    assert len(set(zip(rows.tolist(), cols.tolist()))) == lab.size
    rows, cols, lab = sample_pixels(target, 5000, np.random.default_rng(0), balanced=False)
    assert lab.size == 2100  # every labelled pixel once


def test_forest_sees_rgb_images_in_cielab_and_old_cards_in_rgb(tmp_path):
    from napari_sseg.learn.features import FeatureSpec

    card = train(_items(range(2), tmp=tmp_path), tmp_path / "m",
                 options=TrainOptions(labels="mask", **FAST))
    assert card["features"]["colour"] == "lab"
    model = load_model(tmp_path / "m")
    img, _ = built_image(5)
    lo, hi = np.zeros(3, np.float32), np.full(3, 255.0, np.float32)
    small = model.spec.reduce(img, lo, hi)
    # L of CIELAB: white is 1, black 0, a and b of grey pixels 128 / 255
    grey = model.spec.reduce(np.array([[[255] * 3, [0] * 3]] * 2, np.uint8), lo, hi)
    np.testing.assert_allclose(grey[0, :, 0], [1, 0], atol=1e-3)
    np.testing.assert_allclose(grey[..., 1:], 128 / 255, atol=1e-3)
    assert model.spec.texture_for(3) == "first" and small.shape == img.shape
    # a card written before the colour setting existed means RGB; grey images stay grey
    old = FeatureSpec.from_dict({"downsample": 1, "scales": [1.0], "texture": "luminance"})
    assert old.colour == "rgb" and old.texture_for(3) == "luminance"
    np.testing.assert_allclose(old.reduce(img, lo, hi), img / 255.0, atol=1e-6)
    one = img[..., :1]
    np.testing.assert_array_equal(model.spec.reduce(one, lo[:1], hi[:1]), old.reduce(one, lo[:1], hi[:1]))
    with pytest.raises(ValueError, match="colour"):
        FeatureSpec(colour="hsv")


def test_smoothing_of_the_forest_probabilities(tmp_path):
    """The forest's per-pixel probabilities are smoothed by the card's Gaussian (speckle in the
    noisy class goes); a card without the setting predicts unsmoothed; a bad value is an
    error naming the card's folder."""
    from scipy import ndimage as ndi

    items = []
    for s in range(3):
        img, truth = built_image(s, grey=True)
        items.append(TrainingItem(f"b{s}.png", points=sample_points(truth, 25, rng=s), image=img))
    models = {}
    for sigma in (0.0, 1.5):
        card = train(items, tmp_path / f"m{sigma}",
                     options=TrainOptions(labels="points", smoothing=sigma, **FAST))
        assert card["training"]["forest"]["smoothing"] == sigma
        models[sigma] = load_model(tmp_path / f"m{sigma}")
    img, truth = built_image(7, grey=True)
    plain, _ = models[0.0].predict_proba(img)
    smooth, _ = models[1.5].predict_proba(img)  # the same trees (same pixels and seed)
    np.testing.assert_allclose(smooth, ndi.gaussian_filter(plain, (1.5, 1.5, 0), truncate=3.0),
                               atol=1e-5)
    assert _miou(truth, models[1.5].predict(img)[0]) > _miou(truth, models[0.0].predict(img)[0])

    card_path = tmp_path / "m1.5" / "card.json"
    card = json.loads(card_path.read_text())
    del card["training"]["forest"]["smoothing"]  # a card from before the setting
    card_path.write_text(json.dumps(card))
    np.testing.assert_allclose(load_model(tmp_path / "m1.5").predict_proba(img)[0], plain)
    card["training"]["forest"]["smoothing"] = "wide"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"m1\.5: the card's forest smoothing 'wide'"):
        load_model(tmp_path / "m1.5")
    with pytest.raises(ValueError, match="smoothing"):
        train(items, tmp_path / "bad", options=TrainOptions(smoothing=-1, **FAST))
    assert not (tmp_path / "bad").exists()


def test_time_budget_stops_with_a_saved_model(tmp_path):
    card = train(_items(range(3), tmp=tmp_path), tmp_path / "m",
                 options=TrainOptions(labels="mask", max_minutes=1e-4, n_trees=100,
                                      pixels_per_image=500, validation_fraction=0))
    assert card["training"]["stopped_early"]
    assert card["training"]["forest"]["trees"] == 10  # one step of trees, not 100
    assert load_model(tmp_path / "m").predict(built_image(5)[0])[0].shape == (96, 96)


# ------------------------------------------------------------------------------ bad input


def test_empty_training_set_writes_nothing(tmp_path):
    img, _ = built_image(0)
    with pytest.raises(ModelError, match="empty training set"):
        train([], tmp_path / "m")
    nopoints = [TrainingItem("a.png", points=PointSet.empty(), image=img)]
    with pytest.raises(ModelError, match="empty training set.*a.png"):
        train(nopoints, tmp_path / "m", options=TrainOptions(labels="points", **FAST))
    assert not (tmp_path / "m").exists()


def test_images_of_other_channel_counts(tmp_path):
    items = _items([0]) + _items([1], grey=True)
    items[1].path = "grey1.png"
    with pytest.raises(ModelError, match=r"grey1\.png: 1 channel\(s\), but the images before "
                                         r"it have 3"):
        train(items, tmp_path / "m", options=TrainOptions(labels="points", **FAST))
    assert not (tmp_path / "m").exists()
    train(_items([0, 1]), tmp_path / "m", options=TrainOptions(labels="points", **FAST))
    grey, _ = built_image(2, grey=True)
    with pytest.raises(ModelError, match=r"new\.png: 1 channel\(s\), but .*m was trained on "
                                         r"images with 3"):
        load_model(tmp_path / "m").predict(grey, where="new.png")


@pytest.fixture
def saved(tmp_path):
    train(_items([0, 1]), tmp_path / "m", options=TrainOptions(labels="points", **FAST))
    return tmp_path / "m"


def test_truncated_model_file(saved):
    f = saved / "forest.npz"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"forest\.npz: does not match the digest"):
        load_model(saved)
    # and without the digest check, the file itself is refused clearly
    from napari_sseg.learn.forest import Forest

    with pytest.raises(ModelError, match=r"forest\.npz: cannot read the forest"):
        Forest.load(f)


def test_card_of_another_version(saved):
    card = json.loads((saved / "card.json").read_text())
    card["format_version"] = 99
    (saved / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"card\.json: card format version 99"):
        load_model(saved)
    (saved / "card.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"card\.json: not a readable JSON card"):
        load_model(saved)
    (saved / "card.json").unlink()
    with pytest.raises(ModelError, match=r"card\.json: missing"):
        load_model(saved)


def test_classes_of_points_and_model_disagree(saved):
    model = load_model(saved)
    model.check_classes([1, 2])
    with pytest.raises(ModelError, match=r"pts\.csv: class id\(s\) \[7\] are not among the "
                                         r"classes"):
        model.check_classes([1, 7], where="pts.csv")


def test_forest_file_holds_no_pickle(saved):
    with np.load(saved / "forest.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_learn_imports_no_torch():
    code = ("import sys; import napari_sseg.learn, napari_sseg.learn.train, "
            "napari_sseg.learn.forest, napari_sseg.learn.predict, napari_sseg.io.export, "
            "napari_sseg.cli.train, napari_sseg.cli.predict, napari_sseg.cli.export; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
