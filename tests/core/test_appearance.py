import numpy as np

from napari_sseg.core.appearance import ProductModel, fit_forest, fit_lda
from napari_sseg.core.expand import ExpandOptions, expand
from napari_sseg.core.metrics import ConfusionMatrix
from napari_sseg.core.sampling import sample_points


def test_forest_learns_a_rule_no_linear_boundary_separates():
    # class 0 inside a ring, class 1 outside and inside the hole: no line separates them
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (600, 3)).astype(np.float32)
    radius = np.hypot(x[:, 1], x[:, 2])
    y = ((radius > 0.8) & (radius < 1.6)).astype(int)
    forest = fit_forest(x[:400], y[:400], 3, start=1, n_trees=32, max_depth=None)
    lda = fit_lda(x[:400, 1:], y[:400], 3)
    lp = forest.log_proba(x[400:])
    assert lp.shape == (200, 3) and lp.dtype == np.float32
    # class 2 has no training row: it is never predicted, like the LDA's unseen classes
    assert (lp[:, 2] == -1e3).all()
    assert np.isfinite(lp[:, :2]).all() and (lp[:, :2] <= 0).all()
    np.testing.assert_allclose(np.exp(lp[:, :2]).sum(axis=1), 1.0, atol=1e-5)
    acc_forest = np.mean(lp.argmax(axis=1) == y[400:])
    acc_lda = np.mean(lda.log_proba(x[400:, 1:]).argmax(axis=1) == y[400:])
    assert acc_forest > 0.9
    assert acc_forest > acc_lda + 0.2
    # column 0 is ignored: changing it changes nothing
    moved = x[400:].copy()
    moved[:, 0] += 100
    np.testing.assert_array_equal(forest.log_proba(moved), lp)
    # (..., F) rows keep their leading shape
    assert forest.log_proba(x[400:].reshape(10, 20, 3)).shape == (10, 20, 3)


def test_forest_is_deterministic_and_does_not_modify_inputs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    before = x.copy()
    a = fit_forest(x, y, 2).log_proba(x)
    b = fit_forest(x, y, 2).log_proba(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, before)


def _two_level_blocks(seed=0, size=128, block=4):
    """Class 0: 4 x 4 blocks either dark or bright; class 1: mid-grey blocks. Intensity alone
    tells the classes apart, but not linearly, and the blocks are far smaller than superpixels."""
    rng = np.random.default_rng(seed)
    nb = size // block
    cls = rng.integers(0, 2, (nb, nb))
    level = np.where(cls == 1, 125.0, np.where(rng.random((nb, nb)) < 0.5, 35.0, 215.0))
    img = np.kron(level, np.ones((block, block))) + rng.normal(0, 6, (size, size))
    truth = np.kron(cls, np.ones((block, block), dtype=np.uint8))
    return np.clip(img, 0, 255).astype(np.uint8), truth


def test_cross_validation_picks_the_forest_where_only_it_separates_the_classes():
    img, truth = _two_level_blocks()
    pts = sample_points(truth, 100, rng=2)
    ex = expand(img, pts)
    cm = ConfusionMatrix()
    cm.update(truth, ex.labels)
    with_forest = cm.scores()["miou"]
    assert ex.info["weights"][0][2] in (2, 3)  # the best combination weighs the forest
    plain = expand(img, pts, options=ExpandOptions(forest_trees=0))
    cm = ConfusionMatrix()
    cm.update(truth, plain.labels)
    assert with_forest > 0.8
    assert with_forest > cm.scores()["miou"] + 0.1
    # smoothing the posterior at the pixel scale would blur the 4-pixel blocks (0.78 mIoU):
    # the folds keep it off, and the mask is the one without it
    assert ex.info["smoothing_px"] == 0
    unsmoothed = expand(img, pts, options=ExpandOptions(pixel_smoothing=0))
    np.testing.assert_array_equal(ex.labels, unsmoothed.labels)


def _speckled_stripes(seed, size=128, width=12, noise=60):
    """Diagonal stripes of two grey levels under strong pixel noise: each pixel on its own is
    often misclassified, its neighbours tell."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:size, 0:size]
    truth = (((rr + cc) // width) % 2).astype(np.uint8)
    img = np.where(truth == 1, 150.0, 110.0) + rng.normal(0, noise, truth.shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


def test_pixel_smoothing_removes_speckle_where_the_folds_show_it_helps():
    gains = []
    for seed in range(4):
        img, truth = _speckled_stripes(seed)
        pts = sample_points(truth, 25, rng=seed)
        scores = []
        for sigma in (0.0, 1.5):
            ex = expand(img, pts, options=ExpandOptions(pixel_smoothing=sigma))
            assert ex.info["smoothing_px"] == sigma  # the product alone, smoothed if enabled
            cm = ConfusionMatrix()
            cm.update(truth, ex.labels)
            scores.append(cm.scores()["miou"])
        gains.append(scores[1] - scores[0])
    assert min(gains) >= 0 and np.mean(gains) > 0.01


def test_product_model_is_the_normalised_geometric_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    lda = fit_lda(x, y, 2)
    forest = fit_forest(x, y, 2, n_trees=4)
    prod = ProductModel([lda, forest]).log_proba(x)
    expected = 0.5 * (lda.log_proba(x) + forest.log_proba(x))
    expected -= np.log(np.exp(expected).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(prod, expected, atol=1e-5)
    np.testing.assert_allclose(np.exp(prod).sum(axis=1), 1.0, atol=1e-5)
    assert ((prod.argmax(axis=1) == y).mean()) > 0.9


def test_product_combination_is_kept_unless_clearly_beaten():
    from napari_sseg.core.expand import _prefer

    product = (0.0, 1.0, 3, 0)
    lower = ((0.70, -0.4), (0.0, 1.0, 2, 0))
    close = [((0.80, -0.2), (0.5, 1.0, 0, 1)), ((0.72, -0.3), product), lower]
    _prefer(close, product, 0.1)
    # it alone is kept: it joins no average with those it was preferred over or scored above
    assert close == [((0.72, -0.3), product)]
    far = [((0.90, -0.2), (0.5, 1.0, 0, 1)), ((0.72, -0.3), product)]
    _prefer(far, product, 0.1)
    assert far[0][1] == (0.5, 1.0, 0, 1)
    off = [((0.80, -0.2), (0.5, 1.0, 0, 1)), ((0.80, -0.3), product)]
    _prefer(off, product, -1.0)  # negative: off, the ranking stays
    assert off[0][1] == (0.5, 1.0, 0, 1)
