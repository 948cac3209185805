"""Sections of the SSeg dock widget beyond *Expand* and *Suggestions*.

Each entry of :data:`PANELS` names a section title and a ``"module:Class"`` in this package; the
class is a ``QWidget`` built as ``Class(host)``, where ``host`` is the :class:`SSegWidget` (its
``viewer``, ``image_layer``, ``output_layer``, the worker helpers and the status line). Modules are
imported only when the dock widget is built, so the package's import stays free of Qt.
"""

from __future__ import annotations

from importlib import import_module

#: (section title, "module:Class") in the order the sections appear.
PANELS: list[tuple[str, str]] = [
    ("Corrections", "corrections:CorrectionsPanel"),
    ("Regions", "regions:RegionsPanel"),
    ("Run on folder", "batch:BatchPanel"),
    ("Survey model", "survey:SurveyPanel"),
]


def make_panels(host):
    """Build every registered section for ``host``; yields ``(title, widget)``."""
    for title, target in PANELS:
        module, cls = target.split(":")
        yield title, getattr(import_module(f"{__name__}.{module}"), cls)(host)
