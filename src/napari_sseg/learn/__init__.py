"""The survey model: learn one pixel classifier from the points (or masks) of many images.

``learn`` turns the points of a whole survey into a segmenter for images that have no points
(LSSQPS: expand the points of every image into pseudo-labels, then train on them):

* :mod:`.dataset` builds the training targets of each image (the expansion's pseudo-labels,
  the point pixels alone, or dense masks) and samples pixels per class;
* :mod:`.forest` is the default kind: a random forest on the shared multi-scale filter bank
  (:func:`napari_sseg.core.features.filter_bank`), stored as plain arrays (no pickle);
* :mod:`.unet` is a segmentation-models-pytorch U-Net (torch is imported there only, lazily);
* :mod:`.model` loads a saved model folder (``card.json`` + weights) and predicts tiled class
  probabilities in bounded memory; :mod:`.train` drives training with progress and a time budget.

Importing this package imports numpy only.
"""

from .card import CARD_NAME, FORMAT_VERSION, ModelError
from .model import SurveyModel, load_model

__all__ = ["CARD_NAME", "FORMAT_VERSION", "ModelError", "SurveyModel", "load_model"]
