"""The SAM2 adapter with the real SAM2.1 tiny model (random weights: no checkpoint exists here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from napari_sseg.backends import CheckpointError, resolve_backend  # noqa: E402
from napari_sseg.backends.base import upsample_crop  # noqa: E402
from napari_sseg.backends.sam2 import (  # noqa: E402
    SAM2Proposer,
    _model_fingerprint,
    build_sam2_model,
    load_sam2_model,
)
from napari_sseg.core.fusion import HybridOptions, iter_hybrid_expand  # noqa: E402
from napari_sseg.core.points import PointSet  # noqa: E402
from napari_sseg.core.progress import run_generator  # noqa: E402

pytestmark = pytest.mark.sam2


@pytest.fixture(scope="session")
def tiny():
    torch.manual_seed(0)
    return build_sam2_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def checkpoint_file(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": tiny.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def asym_image():
    """A 200 x 520 image that is not symmetric under any flip or transpose."""
    rr, cc = np.mgrid[:200, :520]
    img = np.zeros((200, 520, 3), np.uint8)
    img[..., 0] = (cc * 255 // 519).astype(np.uint8)
    img[..., 1] = (rr * 255 // 199).astype(np.uint8)
    img[20:70, 380:480] = (250, 30, 30)
    img[120:190, 40:90] = (20, 220, 60)
    return img


def test_whole_expansion_on_real_image(tiny, shared_data):
    from skimage import io

    name = sorted((shared_data / "coral_eilat" / "images").iterdir())[0]
    image = io.imread(name)[:, :, :3]
    gt = io.imread(shared_data / "coral_eilat" / "masks" / (name.stem + ".png"))
    rng = np.random.default_rng(0)
    rr, cc = np.nonzero(gt != 255)
    pick = rng.choice(rr.size, 12, replace=False)
    points = PointSet(np.c_[rr[pick], cc[pick]], gt[rr[pick], cc[pick]])
    proposer = SAM2Proposer("tiny", sam_model=tiny, batch_size=4)
    res = run_generator(iter_hybrid_expand(image, points, proposer,
                                           hybrid=HybridOptions(min_iou=0.0)))
    assert res.labels.shape == gt.shape and res.labels.dtype == np.uint8
    assert res.confidence.shape == gt.shape and res.confidence.dtype == np.float32
    assert set(np.unique(res.labels)) <= set(points.labels.tolist())
    r, c = points.pixel_indices()
    np.testing.assert_array_equal(res.labels[r, c], points.labels)
    assert np.all((res.confidence >= 0) & (res.confidence <= 1))
    masks = res.info["masks"]
    assert masks["accepted"] + masks["misses_point"] + masks["other_classes"] + masks["low_iou"] \
        + masks["empty"] >= len(points)
    assert res.info["embedding_source"] == "computed"
    assert set(res.info["timings"]) >= {"embedding", "decoding", "conflicts", "fill"}


def test_row_col_to_x_y_flip_matches_the_official_predictor(tiny, asym_image):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    proposer = SAM2Proposer("tiny", sam_model=tiny)
    proposer.set_image(asym_image)
    ours = proposer.predict(np.array([[40.0, 430.0]]), [np.array([[150.0, 60.0]])])
    official = SAM2ImagePredictor(tiny)
    official.set_image(asym_image)
    masks, iou, low = official.predict(point_coords=np.array([[430.0, 40.0], [60.0, 150.0]]),
                                       point_labels=np.array([1, 0]), multimask_output=True)
    np.testing.assert_allclose(ours.logits[0], low, atol=2e-3)
    np.testing.assert_allclose(ours.iou[0], iou, atol=1e-4)
    # the other reading of the coordinates gives other masks
    _, _, low_swapped = official.predict(point_coords=np.array([[40.0, 430.0], [150.0, 60.0]]),
                                         point_labels=np.array([1, 0]), multimask_output=True)
    assert np.abs(ours.logits[0] - low_swapped).max() > 0.1
    # only the kept mask is upsampled, as a crop; it equals SAM2's full-resolution mask
    for k in range(3):
        crop = upsample_crop(ours.logits[0, k], asym_image.shape[:2])
        full = np.zeros(asym_image.shape[:2], bool)
        if crop is not None:
            full[crop.slices] = crop.mask
        assert (full != masks[k].astype(bool)).mean() < 1e-3


def test_batched_decoding_with_padding_equals_one_by_one(tiny, asym_image):
    proposer = SAM2Proposer("tiny", sam_model=tiny, batch_size=3)
    proposer.set_image(asym_image)
    pts = np.array([[40.0, 430.0], [150.0, 60.0], [100.0, 260.0]])
    negs = [np.array([[150.0, 60.0], [100.0, 260.0]]), np.zeros((0, 2)), np.array([[40.0, 430.0]])]
    batch = proposer.predict(pts, negs)
    for i in range(3):
        one = proposer.predict(pts[i:i + 1], [negs[i]])
        np.testing.assert_allclose(batch.logits[i], one.logits[0], atol=2e-3)
    assert batch.logits.shape == (3, 3, 256, 256) and batch.logits.dtype == np.float32


def test_fast_decoder_equals_sams_own_mask_decoder(tiny, asym_image):
    fast = SAM2Proposer("tiny", sam_model=tiny, batch_size=2)
    plain = SAM2Proposer("tiny", sam_model=tiny, batch_size=2, fast_decoder=False)
    fast.set_image(asym_image)
    plain._use(fast._features, fast._image_shape)  # same embedding, SAM2's decoder as is
    assert fast._decoder is not None and plain._decoder is None
    pts = np.array([[10.0, 10.0], [150.0, 300.0], [190.0, 510.0]])
    negs = [pts[[1, 2]], pts[[0, 2]], pts[[0, 1]]]
    a, b = fast.predict(pts, negs), plain.predict(pts, negs)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)
    np.testing.assert_allclose(a.iou, b.iou, atol=1e-5)


def test_worker_threads_decode_like_the_calling_thread(tiny, asym_image):
    threads = torch.get_num_threads()
    parallel = SAM2Proposer("tiny", sam_model=tiny, batch_size=1, workers=2)
    serial = SAM2Proposer("tiny", sam_model=tiny, batch_size=2, workers=1)
    parallel.set_image(asym_image)
    serial._use(parallel._features, parallel._image_shape)
    pts = np.array([[10.0, 10.0], [150.0, 300.0], [190.0, 510.0], [60.0, 90.0]])
    negs = [pts[[1, 2]], pts[[0, 2]], np.zeros((0, 2)), pts[[0, 1]]]
    a, b = parallel.predict(pts, negs), serial.predict(pts, negs)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)
    np.testing.assert_allclose(a.iou, b.iou, atol=1e-5)
    assert torch.get_num_threads() == threads  # the workers' single-thread setting is undone


def test_predict_batches_equal_predict_and_stop_reading_when_closed(tiny, asym_image):
    proposer = SAM2Proposer("tiny", sam_model=tiny, batch_size=1, workers=2)
    proposer.set_image(asym_image)
    pts = np.array([[10.0, 10.0], [150.0, 300.0], [190.0, 510.0], [60.0, 90.0], [100.0, 200.0]])
    batches = [(pts[:2], None), (pts[2:3], [pts[:2]]), (pts[3:], [pts[:1], np.zeros((0, 2))])]
    streamed = list(proposer.predict_batches(batches))
    assert len(streamed) == 3
    for (p, n), got in zip(batches, streamed):
        one = proposer.predict(p, n)
        assert got.logits.shape == (len(p), 3, 256, 256)
        np.testing.assert_allclose(got.logits, one.logits, atol=1e-4)
        np.testing.assert_allclose(got.iou, one.iou, atol=1e-5)
    # a consumer that stops after the first batch: only the batches queued ahead were read
    read = []

    def source():
        for i, batch in enumerate(batches * 4):
            read.append(i)
            yield batch

    stream = proposer.predict_batches(source())
    next(stream)
    stream.close()
    assert len(read) == 4  # the first batch and the three queued behind it, of 12


def test_checkpoint_round_trip_through_the_loader(tiny, checkpoint_file, monkeypatch, tmp_path):
    loaded = load_sam2_model("tiny", checkpoint_file, device="cpu")
    assert _model_fingerprint(loaded) == _model_fingerprint(tiny)
    for (ka, va), (kb, vb) in zip(tiny.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    monkeypatch.setenv("NAPARI_SSEG_CHECKPOINT", str(checkpoint_file))
    monkeypatch.chdir(tmp_path)
    proposer, desc = resolve_backend("auto", model="tiny", device="cpu")
    assert isinstance(proposer, SAM2Proposer)
    assert desc.startswith("sam2") and str(checkpoint_file) in desc


def test_bad_checkpoints_give_clear_errors(checkpoint_file, tmp_path):
    truncated = tmp_path / "cut" / "sam2.1_hiera_tiny.pt"
    truncated.parent.mkdir()
    with open(checkpoint_file, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read(checkpoint_file.stat().st_size // 2))
    with pytest.raises(CheckpointError, match="truncated") as err:
        load_sam2_model("tiny", truncated, device="cpu")
    assert str(truncated) in str(err.value) and "download" in str(err.value)

    renamed = tmp_path / "half.pt"  # no known size to compare with: torch.load must catch it
    shutil.copy(truncated, renamed)
    with pytest.raises(CheckpointError, match="corrupted") as err:
        load_sam2_model("tiny", renamed, device="cpu")
    assert str(renamed) in str(err.value)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_sam2_model("tiny", garbage, device="cpu")

    other = tmp_path / "other.pt"
    torch.save({"model": {"image_encoder.weight": torch.zeros(3)}}, other)
    with pytest.raises(CheckpointError, match="does not hold SAM2.1 'tiny' weights"):
        load_sam2_model("tiny", other, device="cpu")

    nomodel = tmp_path / "nomodel.pt"
    torch.save({"state": 1}, nomodel)
    with pytest.raises(CheckpointError, match="not a SAM2 checkpoint"):
        load_sam2_model("tiny", nomodel, device="cpu")

    with pytest.raises(CheckpointError, match="does not exist"):
        load_sam2_model("tiny", tmp_path / "missing.pt", device="cpu")


def test_embedding_cache_memory_disk_and_stale(tiny, asym_image, tmp_path):
    pts = np.array([[40.0, 430.0], [150.0, 60.0]])
    first = SAM2Proposer("tiny", sam_model=tiny, cache_dir=tmp_path)
    first.set_image(asym_image)
    assert first.embedding_source == "computed"
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    ref = first.predict(pts)
    first.set_image(asym_image)
    assert first.embedding_source == "memory"

    second = SAM2Proposer("tiny", sam_model=tiny, cache_dir=tmp_path)
    second.set_image(asym_image)
    assert second.embedding_source == "disk"
    again = second.predict(pts)
    np.testing.assert_array_equal(again.logits, ref.logits)
    np.testing.assert_array_equal(again.iou, ref.iou)

    # a file at the right place whose stored key differs (older version, other model) is stale
    with np.load(files[0]) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["key"] = np.array(str(arrays["key"]).replace('"napari_sseg": "', '"napari_sseg": "old-'))
    np.savez(files[0], **arrays)
    third = SAM2Proposer("tiny", sam_model=tiny, cache_dir=tmp_path)
    third.set_image(asym_image)
    assert third.embedding_source == "computed"
    np.testing.assert_allclose(third.predict(pts).logits, ref.logits, atol=1e-4)
    # ... and was rewritten with the right key
    fourth = SAM2Proposer("tiny", sam_model=tiny, cache_dir=tmp_path)
    fourth.set_image(asym_image)
    assert fourth.embedding_source == "disk"

    # a damaged file is recomputed, not trusted
    files[0].write_bytes(files[0].read_bytes()[:1000])
    fifth = SAM2Proposer("tiny", sam_model=tiny, cache_dir=tmp_path)
    fifth.set_image(asym_image)
    assert fifth.embedding_source == "computed"

    # another image is another key
    other = asym_image.copy()
    other[0, 0, 0] ^= 1
    fifth.set_image(other)
    assert fifth.embedding_source == "computed"


def test_predict_before_set_image_is_refused(tiny):
    with pytest.raises(RuntimeError, match="set_image"):
        SAM2Proposer("tiny", sam_model=tiny).predict(np.array([[1.0, 1.0]]))


@pytest.mark.gui
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run")
def test_loading_sam2_after_a_napari_gl_context_does_not_crash(tmp_path):
    pytest.importorskip("napari")
    script = tmp_path / "gl_then_sam2.py"
    script.write_text(textwrap.dedent("""
        import sys
        import numpy as np
        import napari
        viewer = napari.Viewer(show=True)
        viewer.add_image(np.random.default_rng(0).random((64, 64)))
        napari.qt.get_qapp().processEvents()
        assert "torch" not in sys.modules and "torchvision" not in sys.modules
        from napari_sseg.backends.sam2 import SAM2Proposer, build_sam2_model
        model = build_sam2_model("tiny", device="cpu")
        proposer = SAM2Proposer("tiny", sam_model=model, device="cpu")
        print("SAM2-LOADED", proposer.name)
        viewer.close()
    """))
    env = {k: v for k, v in os.environ.items() if k != "NAPARI_SSEG_ALLOW_TRITON"}
    env.pop("QT_QPA_PLATFORM", None)
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable, str(script)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "SAM2-LOADED" in proc.stdout
