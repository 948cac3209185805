"""npe2 sample data: a CC0 aerial image of Dubai with 30 class points (see sample_data/README.md)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SAMPLE_DIR", "SAMPLE_IMAGE", "SAMPLE_POINTS", "make_sample_data"]

SAMPLE_DIR = Path(__file__).parent / "sample_data"
SAMPLE_IMAGE = SAMPLE_DIR / "dubai_tile2_part005.jpg"
SAMPLE_POINTS = SAMPLE_DIR / "dubai_points.csv"


def make_sample_data() -> list[tuple]:
    """The sample image and one Points layer per class, as napari layer-data tuples."""
    from ._reader import read_points_layers
    from .io import read_image

    image = read_image(SAMPLE_IMAGE)
    layers = [(image, {"name": "Dubai aerial (CC0)", "rgb": True}, "image")]
    layers += read_points_layers(SAMPLE_POINTS)
    return layers
