"""A survey model's probabilities as the expansion's third expert (core/survey.py): the product
is recalibrated on the image's own points."""

import numpy as np

from napari_sseg.core.expand import expand
from napari_sseg.core.sampling import sample_points
from napari_sseg.core.survey import combine_prior, fit_calibration


def test_calibration_recovers_a_known_temperature_and_bias():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (4000, 3))
    truth_scale, truth_bias = 2.0, np.array([-1.0, 0.0, 1.0])
    u = truth_scale * z + truth_bias
    p = np.exp(u - u.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ci = (p.cumsum(axis=1) > rng.random((len(z), 1))).argmax(axis=1)
    scale, bias = fit_calibration(z, ci)
    assert abs(scale - truth_scale) < 0.2
    # softmax ignores a common shift: compare the differences between classes
    assert np.allclose(bias - bias.mean(), truth_bias - truth_bias.mean(), atol=0.2)


def test_calibration_without_evidence_stays_at_the_identity():
    scale, bias = fit_calibration(np.zeros((10, 2)), np.array([0, 1] * 5))
    assert abs(scale - 1) < 1e-6 and np.allclose(bias, 0)
    pmap = np.full((4, 4, 2), 0.5, np.float32)
    prior = np.log(np.stack([np.full((4, 4), 0.8), np.full((4, 4), 0.2)], axis=-1)).astype(
        np.float32)
    out = combine_prior(pmap, prior, scale, bias)
    assert np.allclose(out[..., 0], 0.8, atol=1e-5)


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
