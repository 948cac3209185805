"""``napari-sseg regions``: region label images at chosen granularities, one task per image.

Each image's region hierarchy (:func:`napari_sseg.core.regions.region_hierarchy`) is built once
and cut at every requested number of regions K; ``DIR/<stem>_r<K>.png`` holds region ids 1..K
as a 16-bit PNG (a TIFF, ``_r<K>.tif``, when K exceeds 65535). The batch engine runs the tasks
(:func:`regions_image`) and writes ``DIR/run.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ._common import (
    CliError,
    add_batch_args,
    check_batch_args,
    check_outputs,
    collect_images,
    log_summary,
    make_dir,
    resume_record,
    run_tasks,
)
from ._validate import validate_out_dir

log = logging.getLogger("napari_sseg.cli")

#: largest region id a 16-bit PNG holds; beyond it the cut is written as a TIFF
PNG_MAX_ID = 65535


def add_parser(sub, common) -> None:
    """Add the ``regions`` sub-command to ``sub``."""
    p = sub.add_parser(
        "regions", parents=[common], help="region label images from fine to coarse",
        description="Build each image's region hierarchy once and write one region label "
                    "image per K: DIR/<stem>_r<K>.png (16-bit region ids 1..K; .tif beyond "
                    "65535 regions) and DIR/run.json.")
    p.add_argument("images", type=Path, metavar="IMAGES",
                   help="an image file or a folder of images")
    p.add_argument("--regions", type=int, nargs="+", required=True, metavar="K",
                   help="numbers of regions, at least 2 each (for example 100 300 1000)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_batch_args(p)
    p.set_defaults(func=run)


def output_name(stem: str, k: int) -> str:
    """File name of the cut with ``k`` regions of image ``stem``."""
    return f"{stem}_r{k}.{'png' if k <= PNG_MAX_ID else 'tif'}"


def run(args) -> int:
    """``napari-sseg regions``."""
    from ..batch import Task

    check_batch_args(args)
    bad = [k for k in args.regions if k < 2]
    if bad:
        raise CliError(f"--regions: every K must be at least 2, got {bad[0]}")
    ks = sorted(set(args.regions))
    images = collect_images(args.images)
    validate_out_dir(args.out, images)
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems:
            raise CliError(f"{p} and {stems[p.stem]} would both write {p.stem}_r<K> files; "
                           f"rename one of them")
        stems[p.stem] = p
    if resume_record(args, "regions") is None:
        planned = [args.out / output_name(p.stem, k) for p in images for k in ks]
        check_outputs(planned + [args.out / "run.json"], args.overwrite)
    make_dir(args.out)
    tasks = []
    for path in images:
        outs = {str(k): output_name(path.stem, k) for k in ks}
        tasks.append(Task(path.name, "napari_sseg.cli.regions:regions_image",
                          {"image": str(path), "regions": ks, "outputs": outs},
                          outputs=tuple(outs.values()), files=(str(path),),
                          info={"image": path.name}))
    record = {"command": "regions",
              "settings": {"images": str(args.images), "regions": ks,
                           "overwrite": args.overwrite}}
    result = run_tasks(args, tasks, record=record, unit="image", desc="regions")
    done = result["summary"]["ok"]
    log_summary(done, len(images), "cut", result["images"], args.out)
    return 0 if done == len(images) else 1


def regions_image(inputs: dict, out_dir: Path, report=None) -> dict:
    """Batch task: the region hierarchy of one image, cut at every K, written atomically.

    Notes
    -----
    Keys of ``inputs``:

    image : str
        Image file (2D grey, RGB(A) or multichannel).
    regions : list of int
        Numbers of regions, each at least 2 and at most the image's pixel count.
    outputs : dict of str to str
        Output name (relative to ``out_dir``) of each K (as a string).

    Returns
    -------
    dict
        ``regions``: the number of regions of each written cut; ``build_s``: hierarchy time.

    Raises
    ------
    ValueError
        Naming the image, when a K exceeds its pixel count or the image cannot be read.
    """
    from ..io.atomic import atomic_group

    ks = [int(k) for k in inputs["regions"]]
    names = [Path(out_dir) / inputs["outputs"][str(k)] for k in ks]
    # a failure removes this image's previous outputs, which would otherwise look current
    with atomic_group(discard=names):
        return _write_cuts(Path(inputs["image"]), ks, names, report)


def _write_cuts(path: Path, ks: list[int], names: list[Path], report) -> dict:
    from ..core.regions import cut, default_fine_count, region_hierarchy
    from ..io import read_image, write_label_image

    image = read_image(path)
    pixels = int(image.shape[0] * image.shape[1])
    too_many = [k for k in ks if k > pixels]
    if too_many:
        raise ValueError(f"{path}: cannot cut {too_many[0]} regions from an image of "
                         f"{image.shape[0]} x {image.shape[1]} = {pixels} pixels")
    if report is not None:
        report(f"{path.name}: hierarchy")
    t = time.perf_counter()
    # the finest partition holds at least about twice the largest K wanted
    n_fine = max(2 * max(ks), default_fine_count(image.shape[:2]))
    try:
        hierarchy = region_hierarchy(image, n_fine=n_fine)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    build = time.perf_counter() - t
    counts = {}
    for k, target in zip(ks, names):
        labels = cut(hierarchy, n_regions=k)
        counts[str(k)] = int(labels.max())
        write_label_image(target, labels, max_id=PNG_MAX_ID if k <= PNG_MAX_ID else None)
    return {"regions": counts, "build_s": round(build, 3)}
