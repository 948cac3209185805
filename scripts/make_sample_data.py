"""Rebuild the bundled sample (src/napari_sseg/sample_data/) from the CC0 Dubai aerial set.

Copies one image and draws 30 class points from its ground-truth mask (uniformly random annotated
pixels, fixed seed) with :func:`napari_sseg.core.sampling.sample_points`. Only the points ship; the
dense mask stays in ``../shared/data``.

Usage: ``python scripts/make_sample_data.py [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from napari_sseg.core.sampling import sample_points

STEM = "tile2_image_part_005"
SAMPLE_NAME = "dubai_tile2_part005.jpg"
N_POINTS = 30
SEED = 5
# display colours chosen to read well over an aerial photo (the original masks used #3C1098,
# #8429F6, #6EC1E4, #FEDD3A, #E2A929, #9B9B9B, mostly purples)
CLASSES = [
    (0, "Building", "#E4572E"),
    (1, "Land (unpaved)", "#E8C872"),
    (2, "Road", "#9B5DE5"),
    (3, "Vegetation", "#3BB273"),
    (4, "Water", "#2D7DD2"),
    (5, "Unlabeled", "#9B9B9B"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    args = parser.parse_args()
    src = args.data / "aerial_dubai"
    out = root / "src" / "napari_sseg" / "sample_data"
    out.mkdir(parents=True, exist_ok=True)

    shutil.copyfile(src / "images" / f"{STEM}.jpg", out / SAMPLE_NAME)
    mask = np.asarray(Image.open(src / "masks" / f"{STEM}.png"))
    points = sample_points(mask, N_POINTS, strategy="random", rng=SEED)
    rows, cols = points.pixel_indices()
    with open(out / "dubai_points.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Name", "Row", "Column", "Label"])
        for r, c, lab in zip(rows, cols, points.labels):
            writer.writerow([SAMPLE_NAME, int(r), int(c), int(lab)])
    with open(out / "classes.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "name", "colour"])
        writer.writerows(CLASSES)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
