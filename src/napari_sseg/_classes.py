"""Class metadata shared by the napari reader, writer, sample data and widget (no napari import).

A class is a napari Points layer whose ``metadata`` holds :data:`CLASS_ID_KEY` (int) and
:data:`CLASS_NAME_KEY` (str). Colours are hex strings; a class without a colour gets the
default colour of its id (:func:`napari_sseg.io.default_colour`), so the Points layer and the output Labels layer always agree.
"""

from __future__ import annotations

__all__ = [
    "CLASS_ID_KEY",
    "CLASS_NAME_KEY",
    "CLASS_COLOUR_KEY",
    "OUTPUT_KEY",
    "SUGGESTIONS_KEY",
    "class_colour",
    "class_layer_kwargs",
    "background_value",
]

CLASS_ID_KEY = "sseg_class_id"
CLASS_NAME_KEY = "sseg_class_name"
CLASS_COLOUR_KEY = "sseg_class_colour"
OUTPUT_KEY = "sseg_output"
SUGGESTIONS_KEY = "sseg_suggestions"


def class_colour(class_id: int, colours: dict[int, str] | None = None) -> str:
    """Hex colour of ``class_id``: from ``colours`` when given there, else the default colour."""
    if colours and int(class_id) in colours:
        return colours[int(class_id)]
    from .io.classes import colour_hex, default_colour

    return colour_hex(default_colour(int(class_id)))


def class_layer_kwargs(
    class_id: int, name: str, colour: str, *, size: float = 10.0, ndim: int = 2
) -> dict:
    """Keyword arguments of a napari Points layer that represents one class."""
    return {
        "name": name,
        "ndim": ndim,
        "face_color": colour,
        "border_color": "white",
        "border_width": 0.15,
        "size": size,
        "metadata": {
            CLASS_ID_KEY: int(class_id), CLASS_NAME_KEY: str(name), CLASS_COLOUR_KEY: str(colour)
        },
    }


def background_value(max_class_id: int) -> int:
    """Value of the output Labels layer for unlabelled pixels: 255 (uint8) or 65535 (uint16).

    Class ids are real data (0 can be a class, as in CoralNet exports), so "nothing" is the
    largest value of the label dtype, as in the ``255 = not annotated`` convention of the masks.
    """
    return 255 if max_class_id < 255 else 65535
