"""Files in and out: points files (CoralNet CSV, napari CSV, JSON), class tables, images.

Every writer here writes atomically (temporary file in the same folder, then ``os.replace``).
Importing this package imports only numpy (Pillow/tifffile load when an image is read or written).
"""

from .atomic import (
    atomic_group,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_outputs,
)
from .classes import (
    ClassesFileError,
    ClassTable,
    colour_hex,
    default_colour,
    parse_colour,
    read_classes,
    write_classes_csv,
    write_classes_json,
)
from .images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    list_images,
    overlay_rgb,
    read_image,
    read_label_image,
    write_label_image,
    write_overlay,
    write_rgb,
)
from .points_files import (
    PointsFile,
    PointsFileError,
    read_points_file,
    write_napari_points_csv,
    write_points_csv,
    write_points_json,
    write_unlabelled_points,
)

__all__ = [
    "atomic_group", "atomic_open", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
    "remove_outputs",
    "ClassesFileError", "ClassTable", "colour_hex", "default_colour", "parse_colour",
    "read_classes", "write_classes_csv", "write_classes_json",
    "IMAGE_SUFFIXES", "ImageReadError", "list_images", "overlay_rgb", "read_image",
    "read_label_image", "write_label_image", "write_overlay", "write_rgb",
    "PointsFile", "PointsFileError", "read_points_file", "write_napari_points_csv",
    "write_points_csv", "write_points_json", "write_unlabelled_points",
]
