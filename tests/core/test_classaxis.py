"""Reductions over the class axis agree with numpy's."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax

from napari_sseg.core.classaxis import (
    class_argmax,
    class_max,
    class_sum,
    log_softmax_inplace,
    softmax_inplace,
)


def test_reductions_match_numpy_with_ties():
    rng = np.random.default_rng(0)
    z = rng.integers(0, 3, (40, 30, 5)).astype(np.float32)  # many ties
    idx, best = class_argmax(z)
    np.testing.assert_array_equal(idx, np.argmax(z, axis=-1))  # first of ties
    np.testing.assert_array_equal(best, z.max(axis=-1))
    np.testing.assert_array_equal(class_max(z), z.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(class_sum(z), z.sum(axis=-1, keepdims=True))


def test_softmax_and_log_softmax_in_place():
    rng = np.random.default_rng(1)
    z = (rng.normal(0, 20, (25, 7, 4))).astype(np.float32)
    expected, expected_log = softmax(z, axis=-1), log_softmax(z, axis=-1)
    out = softmax_inplace(z.copy())
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(log_softmax_inplace(z.copy()), expected_log, rtol=1e-5, atol=1e-4)
    single = np.ones((3, 1), np.float32)
    np.testing.assert_array_equal(softmax_inplace(single), 1.0)
