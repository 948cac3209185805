"""Pre-run checks of each command, before any image is processed (exit code 2).

Each ``validate_*`` function runs the library checks of :mod:`napari_sseg.validate` that apply to
the command and raises one :class:`~napari_sseg.validate.InputError` listing every problem found
(one per line, each said once), so that the serial loop and the batch engine start only on input
that every image can use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..validate import (
    PNG_MAX_ID,
    InputError,
    check_class_ids,
    check_not_inputs,
    check_points,
    check_same_pixel,
    check_seeds,
    check_writable,
)

log = logging.getLogger("napari_sseg.cli")


class _Problems:
    """Collects the messages of failed checks; :meth:`raise_any` raises them as one error."""

    def __init__(self):
        self.messages: list[str] = []

    def run(self, check, *args, **kwargs) -> None:
        try:
            check(*args, **kwargs)
        except InputError as exc:
            if str(exc) not in self.messages:
                self.messages.append(str(exc))

    def raise_any(self) -> None:
        if len(self.messages) == 1:
            raise InputError(self.messages[0])
        if self.messages:
            raise InputError(f"{len(self.messages)} problems, nothing was run:\n"
                             + "\n".join(self.messages))


def _label_places(pf, points_path: Path, classes_path: Path | None) -> dict[str, list[int]]:
    """Where each class id comes from: the lines of the points and the class table."""
    places: dict[str, list[int]] = {}
    for key, ps in pf.points.items():
        big = [i for i, lab in enumerate(ps.labels) if int(lab) > PNG_MAX_ID]
        if big:
            places[f"{points_path}: {pf.describe(key, big[:5])}"
                   f"{f' and {len(big) - 5} more' if len(big) > 5 else ''}"] = [
                int(ps.labels[i]) for i in big]
    table_ids = [i for i in pf.classes.names if i > PNG_MAX_ID]
    if table_ids:
        where = classes_path if classes_path is not None else f"{points_path} (its classes)"
        places[f"{where}"] = table_ids
    return places


def validate_expand(args, images: list[Path], pf, matched: dict, *, dims: int = 2) -> None:
    """Checks of ``expand`` (and of the points of ``suggest``) before anything is written.

    Outputs never inputs, the output folder writable, points present and 2D, class ids that
    fit the PNG masks, no two classes on one pixel.
    """
    from ._common import points_for

    p = _Problems()
    inputs = list(images) + [args.points] + ([args.classes] if args.classes else [])
    planned = [args.out / n for i in images for n in (f"{i.stem}.png", f"{i.stem}_overlay.png")]
    planned += [args.out / "run.json", args.out / "classes.json"]
    p.run(check_not_inputs, planned, inputs, out_dir=args.out, images=images)
    p.run(check_writable, args.out)
    p.run(check_points, pf, args.points, dims=dims)
    if not matched and any(len(ps) for ps in pf.points.values()) and not getattr(
            args, "corrections", None):
        names = ", ".join(repr(str(k)) for k in list(pf.points)[:3])
        shown = ", ".join(repr(i.name) for i in images[:3])
        p.messages.append(f"{args.points}: no Name matches an image in {args.images} (Names "
                          f"such as {names}; images such as {shown}): nothing to expand")
    p.run(check_class_ids, _label_places(pf, args.points, args.classes))
    for path, keys in matched.items():
        points, sources = points_for(pf, keys)
        for z in ([None] if points.planes is None else np.unique(points.planes)):  # per plane
            sel = np.arange(len(points)) if z is None else np.flatnonzero(points.planes == z)
            p.run(check_same_pixel, points.subset(sel), [sources[i] for i in sel
                                                         if i < len(sources)],
                  f"{args.points} ({path.name})")
    p.raise_any()


def validate_simulate(args, images: list[Path], masks: list[Path]) -> None:
    """Checks of ``simulate``: seeds, outputs never inputs, output folder writable."""
    p = _Problems()
    p.run(check_seeds, args.seeds, "--seeds")
    planned = [args.out / "metrics.json"] + [args.out / f"points_seed{s}.csv" for s in args.seeds]
    p.run(check_not_inputs, planned, list(images) + list(masks), out_dir=args.out)
    p.run(check_writable, args.out)
    p.raise_any()


def simulate_ignore_index(args, masks: list[Path]) -> int | None:
    """The ignore index of a simulation, chosen before it starts from every readable mask.

    ``--ignore-index auto`` looks at the values of all ground-truth masks (see
    :func:`napari_sseg.core.metrics.choose_ignore_index`) and says what it assumed; masks that
    cannot be read are left to fail in their own task. Returns ``None`` when every pixel is
    scored. Raises :class:`InputError` when nothing would be left to score, and with
    ``--save-masks`` when a class value does not fit the PNG masks.
    """
    from ..core.metrics import choose_ignore_index, scoring_problems, value_counts
    from ..io import ImageReadError, read_label_image

    counts: dict[int, int] = {}
    for m in masks:
        try:
            for v, c in value_counts(read_label_image(m)).items():
                counts[v] = counts.get(v, 0) + c
        except ImageReadError:
            continue
    choice = choose_ignore_index(counts, requested=args.ignore_index)
    if choice.note:
        (log.warning if choice.warn else log.info)("%s", choice.note)
    if counts:
        problem = scoring_problems(counts, choice.index)
        if problem and problem.startswith("nothing to score"):
            raise InputError(f"{args.ground_truth}: {problem}; no point can be sampled. Pass "
                             f"--ignore-index none if {choice.index} is a class")
        if problem:
            log.warning("%s: %s", args.ground_truth, problem)
        classes = [v for v in counts if v != choice.index]
        if getattr(args, "save_masks", False):
            check_class_ids({str(args.ground_truth): classes})
        if classes and max(classes) > 4095:  # the per-image confusion matrices are dense
            raise InputError(f"{args.ground_truth}: ground-truth class value {max(classes)}: "
                             f"simulate scores class values up to 4095; renumber the classes "
                             f"of the masks")
    return choice.index


def validate_out_dir(out: Path, images: list[Path], *inputs: Path | None) -> None:
    """Checks of any per-image command's output folder: not the folder of the images, not
    one of the ``inputs``, writable."""
    p = _Problems()
    p.run(check_not_inputs, [], [*images, *(i for i in inputs if i is not None)], out_dir=out,
          images=images)
    p.run(check_writable, out)
    p.raise_any()
