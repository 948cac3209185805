"""A survey model's probabilities as the expansion's third expert (core/survey.py): the product
is recalibrated on the image's own points."""

import numpy as np

from napari_sseg.core.expand import expand
from napari_sseg.core.sampling import sample_points
from napari_sseg.core.survey import combine_prior, fit_calibration


def test_calibration_recovers_a_known_weight_and_bias():
    rng = np.random.default_rng(0)
    offset = rng.normal(0, 1.0, (4000, 3))
    z = rng.normal(0, 1.5, (4000, 3))
    truth_weight, truth_bias = 2.0, np.array([-1.0, 0.0, 1.0])
    u = offset + truth_weight * z + truth_bias
    p = np.exp(u - u.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ci = (p.cumsum(axis=1) > rng.random((len(z), 1))).argmax(axis=1)
    weight, bias = fit_calibration(offset, z, ci)
    assert abs(weight - truth_weight) < 0.2
    # softmax ignores a common shift: compare the differences between classes
    assert np.allclose(bias - bias.mean(), truth_bias - truth_bias.mean(), atol=0.2)


def test_a_prior_that_says_nothing_keeps_weight_1_and_no_bias():
    weight, bias = fit_calibration(np.zeros((10, 2)), np.zeros((10, 2)), np.array([0, 1] * 5))
    assert abs(weight - 1) < 1e-6 and np.allclose(bias, 0)
    pmap = np.full((4, 4, 2), 0.5, np.float32)
    prior = np.log(np.stack([np.full((4, 4), 0.8), np.full((4, 4), 0.2)], axis=-1)).astype(
        np.float32)
    out = combine_prior(pmap, prior, weight, bias)
    # the prior, mixed with a uniform share, decides
    assert (out[..., 0] > 0.7).all() and np.allclose(out.sum(axis=-1), 1, atol=1e-5)


def test_a_prior_that_does_not_transfer_loses_its_weight():
    rng = np.random.default_rng(3)
    ci = rng.integers(0, 3, 60)
    wrong = np.log(np.full((60, 3), 0.05))
    wrong[np.arange(60), (ci + 1) % 3] = np.log(0.9)  # confidently another class
    weight, _ = fit_calibration(np.zeros((60, 3)), wrong, ci)
    assert weight < 0.2


def _checkerboard(seed=0, size=96, cell=8):
    """(image, truth): 8-pixel checkerboard classes under noise that does not depend on them,
    so neither appearance nor a few points' positions can tell the classes apart."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:size, 0:size]
    truth = ((rr // cell + cc // cell) % 2).astype(np.uint8)
    image = rng.integers(90, 166, (size, size, 3)).astype(np.uint8)
    return image, truth


def test_a_right_but_miscalibrated_prior_is_corrected_by_the_points():
    image, truth = _checkerboard()
    rng = np.random.default_rng(1)
    # the model ranks the pixels right but under-predicts class 1 everywhere: its argmax says
    # class 0 on the whole image
    p1 = np.where(truth == 1, 0.45, 0.05) + rng.uniform(-0.03, 0.03, truth.shape)
    prior = np.stack([1 - p1, p1], axis=-1).astype(np.float32)
    assert (prior.argmax(axis=-1) == 0).all()
    points = sample_points(truth, 40, rng=2)

    alone = expand(image, points)
    joined = expand(image, points, prior_proba=prior, prior_classes=[0, 1])
    acc_alone = np.mean(alone.labels == truth)
    acc_joined = np.mean(joined.labels == truth)
    assert acc_joined > 0.95
    assert acc_joined > acc_alone + 0.3
    w = joined.info["prior_weights"]
    assert w["bias"][1] - w["bias"][0] > 1.0  # the points raised class 1
    assert w["prior"] > 0


def test_on_a_grey_image_without_graph_the_points_only_recalibrate_the_prior():
    """A single-channel image whose expansion chose no spatial expert: its pixel classifier
    (a few dozen pixels) is left out of the product; a colour image keeps it."""
    image, truth = _checkerboard(4)
    rng = np.random.default_rng(5)
    p1 = np.where(truth == 1, 0.45, 0.05) + rng.uniform(-0.03, 0.03, truth.shape)
    prior = np.stack([1 - p1, p1], axis=-1).astype(np.float32)
    points = sample_points(truth, 40, rng=6)
    grey = expand(image[..., 0], points, prior_proba=prior, prior_classes=[0, 1])
    assert all(w[0] == 0 for w in grey.info["weights"])  # the product of LDA and forest
    assert grey.info["prior_weights"]["expansion"] == 0
    assert np.mean(grey.labels == truth) > 0.95
    colour = expand(image, points, prior_proba=prior, prior_classes=[0, 1])
    assert colour.info["prior_weights"]["expansion"] == 0.75
