from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sseg.core.features import (
    DEFAULT_SCALES,
    feature_names,
    filter_bank,
    filter_bank_at,
    iter_filter_bank,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_shapes_and_names_for_grey_rgb_and_multichannel():
    rng = np.random.default_rng(0)
    for shape, n_ch in (((40, 50), 1), ((40, 50, 3), 3), ((40, 50, 4), 3), ((40, 50, 5), 5)):
        img = rng.integers(0, 255, shape).astype(np.uint8)
        f = filter_bank(img)
        names = feature_names(shape[2] if len(shape) == 3 else 1)
        assert f.shape == (40, 50, len(DEFAULT_SCALES) * (n_ch + 7)) == (40, 50, len(names))
        assert f.dtype == np.float32 and np.isfinite(f).all()
        assert len(set(names)) == len(names)
    assert feature_names(1, scales=(2.0,)) == [
        "gaussian_s2_c0", "gradient_s2", "log_s2", "hessian_max_s2", "hessian_min_s2",
        "structure_max_s2", "structure_min_s2", "dog_s2"]
    assert len(feature_names(3, scales=(1.0,), texture="all")) == 3 + 7 * 3


def test_values_match_the_filters_they_are_named_after():
    rng = np.random.default_rng(1)
    img = ndi.gaussian_filter(rng.random((64, 70)), 2).astype(np.float32)
    f = filter_bank(img, scales=(1.6,), normalize=False)
    names = feature_names(1, scales=(1.6,))
    col = {nm: f[:, :, i] for i, nm in enumerate(names)}
    g = lambda x, s, o=0: ndi.gaussian_filter(x, s, order=o, truncate=3.0)  # noqa: E731
    np.testing.assert_allclose(col["gaussian_s1.6_c0"], g(img, 1.6), atol=1e-6)
    np.testing.assert_allclose(col["gradient_s1.6"],
                               ndi.gaussian_gradient_magnitude(img, 1.6, truncate=3.0), atol=1e-6)
    np.testing.assert_allclose(col["log_s1.6"], ndi.gaussian_laplace(img, 1.6, truncate=3.0),
                               atol=1e-6)
    np.testing.assert_allclose(col["dog_s1.6"], g(img, 1.6) - g(img, 0.66 * 1.6), atol=1e-6)
    # Hessian eigenvalues: sorted, their sum is the Laplacian, against numpy's eigvalsh
    hrr, hrc, hcc = g(img, 1.6, (2, 0)), g(img, 1.6, (1, 1)), g(img, 1.6, (0, 2))
    mats = np.stack([np.stack([hrr, hrc], -1), np.stack([hrc, hcc], -1)], -1)
    ev = np.linalg.eigvalsh(mats.astype(np.float64))
    np.testing.assert_allclose(col["hessian_max_s1.6"], ev[..., 1], atol=1e-5)
    np.testing.assert_allclose(col["hessian_min_s1.6"], ev[..., 0], atol=1e-5)
    # structure tensor eigenvalues are non-negative, larger first
    assert (col["structure_min_s1.6"] >= -1e-6).all()
    assert (col["structure_max_s1.6"] >= col["structure_min_s1.6"]).all()


def test_ridge_shows_in_hessian_and_edges_in_gradient():
    img = np.zeros((60, 60), np.float32)
    img[:, 29:31] = 1.0  # a bright vertical line, like a membrane in inverted EM
    f = filter_bank(img, scales=(1.0,), normalize=False)
    names = feature_names(1, scales=(1.0,))
    hmin = f[:, :, names.index("hessian_min_s1")]
    assert hmin[:, 29:31].mean() < hmin[:, :20].mean() - 0.1  # strongly curved across the line
    grad = f[:, :, names.index("gradient_s1")]
    assert grad[:, 27:29].mean() > 5 * grad[:, :20].mean() + 0.05


def test_rgb_texture_uses_luminance_and_pca_for_other_channels():
    rng = np.random.default_rng(2)
    grey = ndi.gaussian_filter(rng.random((50, 50)), 1.5).astype(np.float32)
    rgb = np.stack([grey, grey, grey], -1)
    a = filter_bank(grey, scales=(1.0,), normalize=False)
    b = filter_bank(rgb, scales=(1.0,), normalize=False)
    # identical channels: luminance equals the grey image, texture features equal
    np.testing.assert_allclose(a[:, :, 1:], b[:, :, 3:], atol=1e-5)
    # five channels where only channel 2 varies: the first principal component is that channel
    multi = np.zeros((50, 50, 5), np.float32)
    multi[:, :, 2] = grey
    c = filter_bank(multi, scales=(1.0,), normalize=False)
    np.testing.assert_allclose(c[:, :, 5:], a[:, :, 1:], atol=1e-5)
    # texture="first": the first channel alone (e.g. the lightness of CIELAB)
    lab = np.stack([grey, rng.random((50, 50)), rng.random((50, 50))], -1).astype(np.float32)
    d = filter_bank(lab, scales=(1.0,), normalize=False, texture="first",
                    features=("gradient", "log", "hessian", "structure", "dog"))
    np.testing.assert_allclose(d, a[:, :, 1:], atol=1e-5)


@pytest.mark.parametrize("strip_rows", [7, 64])
def test_strips_and_points_equal_the_full_bank(strip_rows):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (90, 40, 3)).astype(np.uint8)
    opts = dict(scales=(0.7, 3.5, 5.0))
    full = filter_bank(img, **opts)
    parts = list(iter_filter_bank(img, strip_rows=strip_rows, **opts))
    assert parts[0][0] == slice(0, strip_rows)
    np.testing.assert_allclose(np.concatenate([p for _, p in parts]), full, atol=1e-5)
    rows = rng.integers(0, 90, 30)
    cols = rng.integers(0, 40, 30)
    at = filter_bank_at(img, rows, cols, strip_rows=strip_rows, **opts)
    np.testing.assert_allclose(at, full[rows, cols], atol=1e-5)


def test_input_is_not_modified_and_bad_options_raise():
    img = np.arange(30 * 30, dtype=np.float64).reshape(30, 30)
    before = img.copy()
    filter_bank(img, scales=(1.0,))
    np.testing.assert_array_equal(img, before)
    with pytest.raises(ValueError, match="scales"):
        filter_bank(img, scales=(0.0,))
    with pytest.raises(ValueError, match="unknown feature kinds"):
        filter_bank(img, features=("gabor",))
    with pytest.raises(ValueError, match="texture"):
        filter_bank(img, texture="red")
    with pytest.raises(ValueError, match="expected a 2D image"):
        filter_bank(np.zeros((4, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"outside the image of 30 x 30"):
        filter_bank_at(img, [3, 30], [1, 1])


@pytest.mark.skipif(not (DATA / "em_isbi2012").is_dir(), reason="shared data not present")
def test_membranes_separate_better_with_the_bank_than_with_intensity_alone():
    """On a real EM slice, a linear fit on the bank separates membrane pixels better than
    one on smoothed intensity (held-out pixels of the same slice)."""
    from napari_sseg.io.images import read_image, read_label_image

    img = read_image(sorted((DATA / "em_isbi2012" / "images").glob("*.png"))[0])
    mask = read_label_image(sorted((DATA / "em_isbi2012" / "masks").glob("*.png"))[0])
    f = filter_bank(img[:256, :256])
    y = mask[:256, :256].ravel().astype(int)
    x = f.reshape(-1, f.shape[2]).astype(np.float64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(y.size)
    train, test = idx[:4000], idx[4000:20000]

    def balanced_accuracy(cols):
        xa = np.c_[x[:, cols], np.ones(len(x))]
        w, *_ = np.linalg.lstsq(xa[train], 2.0 * y[train] - 1, rcond=None)
        pred = (xa[test] @ w > 0).astype(int)
        return np.mean([np.mean(pred[y[test] == k] == k) for k in (0, 1)])

    names = feature_names(1)
    smooth = [names.index("gaussian_s1_c0")]
    assert balanced_accuracy(list(range(len(names)))) > balanced_accuracy(smooth) + 0.03
