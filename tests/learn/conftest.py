"""Built images for the survey-model tests: three textures whose classes a model must learn."""

from __future__ import annotations

import numpy as np
import pytest


def built_image(seed: int, size: int = 96, *, grey: bool = False):
    """(image, truth): class 1 bright smooth, class 2 dark noisy, class 3 mid stripes.

    The regions (a disk, a band, the rest) move with the seed, so a model must learn the
    appearance of the classes, not where they are.
    """
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:size, 0:size]
    truth = np.full((size, size), 2, dtype=np.uint8)
    r0, c0 = rng.integers(size // 4, 3 * size // 4, 2)
    truth[(rr - r0) ** 2 + (cc - c0) ** 2 < (size // 5) ** 2] = 1
    band = rng.integers(0, size - size // 5)
    truth[:, band: band + size // 5] = np.where(truth[:, band: band + size // 5] == 1, 1, 3)
    base = np.where(truth == 1, 200.0, np.where(truth == 2, 60.0, 130.0))
    noise = np.where(truth == 2, rng.normal(0, 25, truth.shape), rng.normal(0, 4, truth.shape))
    stripes = np.where(truth == 3, 35 * np.sin(cc * 1.3), 0)
    grey_img = np.clip(base + noise + stripes, 0, 255).astype(np.uint8)
    if grey:
        return grey_img, truth
    rgb = np.stack([grey_img, np.clip(grey_img * 0.8 + 20, 0, 255).astype(np.uint8),
                    np.where(truth == 3, 180, grey_img).astype(np.uint8)], axis=-1)
    return rgb, truth


@pytest.fixture
def built():
    return built_image
