"""The U-Net survey model: learns a built image in a few steps, checkpoints every epoch, resumes,
takes a user's local encoder weights, and refuses truncated or mismatched files clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import built_image

pytest.importorskip("segmentation_models_pytorch")

from napari_sseg.core.metrics import ConfusionMatrix  # noqa: E402
from napari_sseg.learn import ModelError, load_model  # noqa: E402
from napari_sseg.learn.dataset import TrainingItem  # noqa: E402
from napari_sseg.learn.train import TrainOptions, train  # noqa: E402

SMALL = dict(kind="unet", labels="mask", device="cpu", batch_size=4, crop=64,
             learning_rate=3e-3, validation_fraction=0.2)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    from napari_sseg.io.images import write_label_image

    tmp = tmp_path_factory.mktemp("unet")
    out = []
    for s in range(5):
        img, truth = built_image(s, size=64, grey=True)
        out.append(TrainingItem(f"b{s}.png", image=img,
                                mask=write_label_image(tmp / f"m{s}.png", truth)))
    return out


def _miou(truth, labels):
    cm = ConfusionMatrix()
    cm.update(truth, labels)
    return cm.scores()["miou"]


def test_unet_learns_checkpoints_and_resumes(items, tmp_path):
    out = tmp_path / "u"
    card = train(items, out, options=TrainOptions(epochs=2, steps_per_epoch=12, **SMALL))
    assert card["kind"] == "unet" and card["training"]["epochs_done"] == 2
    assert [h["epoch"] for h in card["validation"]["history"]] == [1, 2]
    assert card["validation"]["images"] and card["validation"]["miou"] is not None
    assert (out / "checkpoint.pt").is_file() and (out / "model.pt").is_file()
    model = load_model(out, device="cpu")
    img, truth = built_image(9, size=64, grey=True)
    labels, conf = model.predict(img)
    assert labels.shape == truth.shape and conf.dtype == np.float32
    # 24 steps from random weights: far from perfect, but well above one class everywhere
    assert _miou(truth, labels) > 0.45
    # --resume continues from the checkpoint to the new number of epochs
    card2 = train(items, out, options=TrainOptions(epochs=3, steps_per_epoch=4, resume=True,
                                                   **SMALL))
    assert card2["training"]["epochs_done"] == 3
    assert [h["epoch"] for h in card2["validation"]["history"]] == [1, 2, 3]


def test_encoder_weights_from_a_local_file(items, tmp_path):
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(123)
    donor = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=3)
    weights = tmp_path / "encoder.pt"
    torch.save(donor.encoder.state_dict(), weights)
    out = tmp_path / "u"
    card = train(items, out, options=TrainOptions(epochs=1, steps_per_epoch=1,
                                                  encoder_weights=str(weights),
                                                  learning_rate=1e-12,
                                                  **{k: v for k, v in SMALL.items()
                                                     if k != "learning_rate"}))
    info = card["network"]["encoder_weights"]
    assert info["loaded"] == info["encoder_tensors"] > 0
    state = torch.load(out / "model.pt", weights_only=True)
    w = "encoder.layer1.0.conv1.weight"
    torch.testing.assert_close(state[w], donor.encoder.state_dict()["layer1.0.conv1.weight"],
                               atol=1e-6, rtol=0)
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(3)}, bad)
    with pytest.raises(ModelError, match=r"bad\.pt: none of its 1 tensors fit"):
        train(items, tmp_path / "v", options=TrainOptions(epochs=1, steps_per_epoch=1,
                                                          encoder_weights=str(bad), **SMALL))


def test_truncated_unet_weights_and_missing_checkpoint(items, tmp_path):
    out = tmp_path / "u"
    train(items, out, options=TrainOptions(epochs=1, steps_per_epoch=1, **SMALL))
    card = json.loads((out / "card.json").read_text())
    f = out / "model.pt"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"model\.pt: does not match the digest"):
        load_model(out, device="cpu")
    card["files"] = {}
    (out / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"model\.pt: cannot read the U-Net weights"):
        load_model(out, device="cpu")
    with pytest.raises(ModelError, match=r"checkpoint\.pt: no checkpoint to resume from"):
        train(items, tmp_path / "fresh", options=TrainOptions(epochs=1, resume=True, **SMALL))
