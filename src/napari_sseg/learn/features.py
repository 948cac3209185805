"""Input preparation shared by training and prediction: channels, normalisation, resolution.

A survey model sees every image the same way: channels scaled to about [0, 1] with ranges
measured on the whole image (uint8 by 255, other dtypes between their 0.5 and 99.5
percentiles), block-averaged by the model's fixed ``downsample`` factor (texture filters mean
the same scale on every image), turned into CIELAB for forests trained since colour became a
setting (``colour="lab"``, RGB images only), then, for the forest, the shared multi-scale
filter bank of :mod:`napari_sseg.core.features` with a fixed texture channel (luminance, or L
of CIELAB), so a tile's features do not depend on the rest of the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..core.image import as_channels
from ..core.superpixels import block_mean

__all__ = ["FeatureSpec", "channel_ranges", "normalise", "reduced", "features_at", "features",
           "choose_downsample"]


@dataclass(frozen=True)
class FeatureSpec:
    """How a model sees an image.

    Attributes
    ----------
    downsample : int
        Images are block-averaged by this factor before features (and the network) see them.
    scales : tuple of float
        Scales of the filter bank (forest).
    texture : str
        Texture channel of the filter bank ("luminance": fixed, independent of the tile).
    truncate : float
        Gaussian kernels are cut at this many standard deviations.
    colour : str
        "rgb" (channels as they are) or "lab" (RGB images turned into CIELAB, each axis scaled
        to about [0, 1]; other channel counts are left as they are).
    """

    downsample: int = 1
    scales: tuple[float, ...] = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
    texture: str = "luminance"
    truncate: float = 3.0
    colour: str = "rgb"

    def __post_init__(self):
        if self.colour not in ("rgb", "lab"):
            raise ValueError(f"colour must be 'rgb' or 'lab', got {self.colour!r}")

    def to_dict(self) -> dict:
        """The settings as JSON-able values for the model card (:meth:`from_dict` reads them)."""
        d = asdict(self)
        d["scales"] = list(self.scales)
        d["bank"] = "napari_sseg.core.features.filter_bank"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        """Settings of a card; cards written before ``colour`` existed read as "rgb", which is
        what those models were trained with."""
        return cls(downsample=int(d.get("downsample", 1)),
                   scales=tuple(float(s) for s in d.get("scales", cls.scales)),
                   texture=str(d.get("texture", "luminance")),
                   truncate=float(d.get("truncate", 3.0)),
                   colour=str(d.get("colour", "rgb")))

    def reduce(self, part: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Normalised, block-averaged and colour-converted float32 image (what the model sees)."""
        small = reduced(part, lo, hi, self.downsample)
        if self.colour == "lab" and small.shape[2] == 3:
            small = _lab(small)
        return small

    def texture_for(self, n_channels: int) -> str:
        """Texture channel of the filter bank: L (the first channel) of a CIELAB image."""
        return "first" if self.colour == "lab" and n_channels == 3 else self.texture

    @property
    def halo(self) -> int:
        """Working pixels of context a tile needs so its features equal the whole image's."""
        smax = max(self.scales)
        return int(np.ceil(self.truncate * smax * 1.5)) + 2


def choose_downsample(pixel_counts, *, work_pixels: int = 400_000) -> int:
    """Factor that brings the median image to at most about ``work_pixels`` pixels."""
    med = float(np.median(pixel_counts)) if len(pixel_counts) else 0.0
    return max(1, int(np.ceil(np.sqrt(med / work_pixels))))


def channel_ranges(image: np.ndarray, *, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (low, high) values mapped to 0 and 1 (RGBA alpha dropped).

    uint8 channels use 0..255; others their 0.5 and 99.5 percentiles (on a sample of about
    200 000 pixels), the min and max when those coincide.
    """
    arr = as_channels(image, name=name)
    c = arr.shape[2]
    if arr.dtype == np.uint8:
        return np.zeros(c, np.float32), np.full(c, 255.0, np.float32)
    step = max(1, arr.shape[0] * arr.shape[1] // 200_000)
    sample = arr.reshape(-1, c)[::step].astype(np.float32)
    sample = np.where(np.isfinite(sample), sample, 0)
    lo, hi = np.percentile(sample, [0.5, 99.5], axis=0)
    flat = hi <= lo
    lo = np.where(flat, sample.min(axis=0), lo)
    hi = np.where(flat, sample.max(axis=0), hi)
    hi = np.where(hi <= lo, lo + 1, hi)
    return lo.astype(np.float32), hi.astype(np.float32)


def normalise(part: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(M, N, C) float32 channels of ``part`` mapped by ``(x - lo) / (hi - lo)``, clipped to [0, 1]."""
    arr = as_channels(part)
    out = arr.astype(np.float32)
    out = np.where(np.isfinite(out), out, 0)
    out -= lo
    out /= hi - lo
    return np.clip(out, 0, 1, out=out)


def reduced(part: np.ndarray, lo, hi, downsample: int) -> np.ndarray:
    """Normalised and block-averaged (by ``downsample``) float32 image."""
    return np.ascontiguousarray(block_mean(normalise(part, lo, hi), downsample), np.float32)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB of an RGB image in [0, 1], each axis scaled to about [0, 1] (L / 100,
    (a + 128) / 255, (b + 128) / 255)."""
    from skimage.color import rgb2lab

    lab = rgb2lab(np.clip(rgb, 0, 1)).astype(np.float32)
    lab[..., 0] /= 100.0
    lab[..., 1:] += 128.0
    lab[..., 1:] /= 255.0
    return lab


def features(small: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(h, w, F) filter-bank features of a normalised, reduced image."""
    from ..core.features import filter_bank

    return filter_bank(small, scales=spec.scales, texture=spec.texture_for(small.shape[2]),
                       truncate=spec.truncate, normalize=False)


def features_at(small: np.ndarray, rows, cols, spec: FeatureSpec) -> np.ndarray:
    """(S, F) filter-bank features of a normalised, reduced image at pixels (rows, cols)."""
    from ..core.features import filter_bank_at

    return filter_bank_at(small, rows, cols, scales=spec.scales,
                          texture=spec.texture_for(small.shape[2]), truncate=spec.truncate,
                          normalize=False)
