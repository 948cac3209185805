"""napari-sseg: sparse class points to dense label masks."""

__version__ = "0.1.0"
