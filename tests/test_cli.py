"""The ``napari-sseg`` command line on real aerial crops and carefully built bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from napari_sseg.cli import main
from napari_sseg.core.metrics import ConfusionMatrix
from napari_sseg.core.points import PointSet
from napari_sseg.core.sampling import sample_points
from napari_sseg.io import (
    ClassTable,
    read_image,
    read_label_image,
    read_points_file,
    write_classes_csv,
    write_label_image,
    write_points_csv,
    write_points_json,
    write_rgb,
)

STEMS = ("tile1_image_part_001", "tile1_image_part_002", "tile1_image_part_003")
CROP = (slice(0, 160), slice(0, 200))
NAMES = {0: "Building", 1: "Land", 2: "Road", 3: "Vegetation", 4: "Water", 5: "Unlabeled"}


@dataclass
class AerialSet:
    images: Path
    masks: Path
    points: dict[str, PointSet]  # file name -> points with their oracle labels


@pytest.fixture(scope="module")
def aerial(shared_data, tmp_path_factory) -> AerialSet:
    """Three 160 x 200 crops of real aerial tiles as PNG, their masks and 20 oracle points each."""
    root = tmp_path_factory.mktemp("aerial")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    points = {}
    for i, stem in enumerate(STEMS):
        img = read_image(shared_data / "aerial_dubai" / "images" / f"{stem}.jpg")[CROP]
        gt = read_label_image(shared_data / "aerial_dubai" / "masks" / f"{stem}.png")[CROP]
        write_rgb(root / "images" / f"{stem}.png", img)
        write_label_image(root / "masks" / f"{stem}.png", gt)
        points[f"{stem}.png"] = sample_points(gt, 20, rng=i)
    return AerialSet(root / "images", root / "masks", points)


def _copy_images(aerial: AerialSet, dst: Path, stems=STEMS) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for s in stems:
        shutil.copy(aerial.images / f"{s}.png", dst / f"{s}.png")
    return dst


def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------------- expand


def test_expand_folder_with_coralnet_csv(aerial, tmp_path, capsys):
    pts = write_points_csv(tmp_path / "points.csv", aerial.points)
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", aerial.images, "--points", pts, "--out", out, "-q")
    assert code == 0, err
    assert err == ""  # -q: no progress bar, no messages when all is well
    expected = sorted([f"{s}.png" for s in STEMS] + [f"{s}_overlay.png" for s in STEMS]
                      + ["run.json"])
    assert _files(out) == expected
    cm = ConfusionMatrix()
    for stem in STEMS:
        ps = aerial.points[f"{stem}.png"]
        lab = read_label_image(out / f"{stem}.png")
        assert lab.shape == (160, 200) and lab.dtype == np.uint8
        rows, cols = ps.pixel_indices()
        np.testing.assert_array_equal(lab[rows, cols], ps.labels)  # pixel value == label
        assert set(np.unique(lab)) <= set(ps.labels.tolist())
        overlay = read_image(out / f"{stem}_overlay.png")
        assert overlay.shape == (160, 200, 3) and overlay.dtype == np.uint8
        cm.update(read_label_image(aerial.masks / f"{stem}.png"), lab)
    # measured 0.87 pixel accuracy on these crops from 20 points; floor with margin
    assert cm.scores()["pixel_accuracy"] > 0.7
    run = json.loads((out / "run.json").read_text())
    assert run["version"] and run["backend"].startswith("superpixel")
    assert run["settings"]["backend"] == "auto" and run["settings"]["points_format"] == "coralnet"
    assert [r["status"] for r in run["images"]] == ["ok"] * 3
    assert all(r["seconds"] > 0 and r["points"] == 20 for r in run["images"])
    assert run["unmatched_point_names"] == []
    assert {c["id"] for c in run["classes"]} == set(
        np.concatenate([p.labels for p in aerial.points.values()]).tolist())
    # the output folder (label PNGs beside overlays and run.json) scores directly
    code = main(["score", str(out), str(aerial.masks), "-q"])
    scored = json.loads(capsys.readouterr().out)
    assert code == 0 and scored["images_scored"] == 3
    assert scored["miou"] == pytest.approx(cm.scores()["miou"])


def test_expand_textual_labels_without_classes_file_writes_classes_json(aerial, tmp_path, capsys):
    stem = STEMS[0]
    ps = aerial.points[f"{stem}.png"]
    pts = write_points_csv(tmp_path / "p.csv", {f"{stem}.png": ps},
                           classes=ClassTable(NAMES), label_names=True)
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", aerial.images / f"{stem}.png", "--points", pts,
                     "--out", out, "-q")
    assert code == 0, err
    table = json.loads((out / "classes.json").read_text())["classes"]
    present = sorted({NAMES[int(i)] for i in ps.labels})
    assert [c["name"] for c in table] == present
    assert [c["id"] for c in table] == list(range(1, len(present) + 1))
    ids = {c["name"]: c["id"] for c in table}
    lab = read_label_image(out / f"{stem}.png")
    rows, cols = ps.pixel_indices()
    np.testing.assert_array_equal(lab[rows, cols], [ids[NAMES[int(i)]] for i in ps.labels])
    run = json.loads((out / "run.json").read_text())
    assert run["textual_labels"] and run["classes_file"] == "classes.json"
    assert run["classes"] == table


def test_expand_textual_labels_with_classes_file_and_colours(aerial, tmp_path, capsys):
    stem = STEMS[1]
    ps = aerial.points[f"{stem}.png"]
    table = ClassTable({k + 10: v for k, v in NAMES.items()},
                       {k + 10: (255, 0, 255) for k in NAMES})
    classes = write_classes_csv(tmp_path / "classes.csv", table)
    pts = write_points_csv(tmp_path / "p.csv", {f"{stem}.png": ps},
                           classes=ClassTable(NAMES), label_names=True)
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", aerial.images, "--points", pts, "--classes", classes,
                     "--out", out, "-q")
    assert code == 1  # the two other images have no points: skipped
    lab = read_label_image(out / f"{stem}.png")
    rows, cols = ps.pixel_indices()
    np.testing.assert_array_equal(lab[rows, cols], ps.labels + 10)
    overlay = read_image(out / f"{stem}_overlay.png").astype(int)
    img = read_image(aerial.images / f"{stem}.png").astype(int)
    # 50 % magenta over the image at every labelled pixel
    np.testing.assert_allclose(overlay[rows, cols], (img[rows, cols] + [255, 0, 255]) / 2, atol=1)


def test_expand_napari_csv_and_json_for_one_image(aerial, tmp_path, capsys):
    stem = STEMS[2]
    ps = aerial.points[f"{stem}.png"]
    napari_csv = tmp_path / "napari.csv"
    napari_csv.write_text("index,axis-0,axis-1,Class\n" + "".join(
        f"{i},{r},{c},{lab}\n" for i, ((r, c), lab) in enumerate(zip(ps.coords, ps.labels))))
    json_file = write_points_json(tmp_path / "p.json", {None: ps})
    results = []
    for f in (napari_csv, json_file):
        out = tmp_path / f"out_{f.suffix[1:]}"
        code, err = _run(capsys, "expand", aerial.images / f"{stem}.png", "--points", f,
                         "--out", out, "-q")
        assert code == 0, err
        results.append(read_label_image(out / f"{stem}.png"))
    np.testing.assert_array_equal(results[0], results[1])
    # a single-image points file cannot be spread over a folder
    code, err = _run(capsys, "expand", aerial.images, "--points", napari_csv, "--out",
                     tmp_path / "o3")
    assert code == 2 and "holds the points of one image" in err
    assert not (tmp_path / "o3").exists()


def test_name_matching_no_image_is_warned_and_listed(aerial, tmp_path, capsys):
    pts = {**aerial.points, "ghost.jpg": PointSet([[1, 1]], [1])}
    f = write_points_csv(tmp_path / "p.csv", pts)
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", aerial.images, "--points", f, "--out", out, "-q")
    assert code == 0
    assert "1 Name(s) match no image" in err and "'ghost.jpg'" in err
    assert json.loads((out / "run.json").read_text())["unmatched_point_names"] == ["ghost.jpg"]


def test_names_with_folders_and_other_case_match_images(aerial, tmp_path, capsys):
    stem = STEMS[0]
    ps = aerial.points[f"{stem}.png"]
    f = write_points_csv(tmp_path / "p.csv", {f"survey/2020/{stem.upper()}.PNG": ps})
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", aerial.images / f"{stem}.png", "--points", f,
                     "--out", out, "-q")
    assert code == 0, err
    lab = read_label_image(out / f"{stem}.png")
    rows, cols = ps.pixel_indices()
    np.testing.assert_array_equal(lab[rows, cols], ps.labels)


def test_image_without_points_is_skipped_and_nothing_written(aerial, tmp_path, capsys):
    pts = {k: v for k, v in aerial.points.items() if not k.startswith(STEMS[1])}
    f = write_points_csv(tmp_path / "p.csv", pts)
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", aerial.images, "--points", f, "--out", out)
    assert code == 1
    assert "expand: 100%" in err  # tqdm progress without -q, final count drawn
    assert f"{STEMS[1]}.png: no points in" in err  # as it happens
    assert f"skipped 1 image(s) with no points (nothing written for them): {STEMS[1]}.png" in err
    assert not (out / f"{STEMS[1]}.png").exists()
    assert not (out / f"{STEMS[1]}_overlay.png").exists()
    assert (out / f"{STEMS[0]}.png").exists() and (out / f"{STEMS[2]}.png").exists()
    run = json.loads((out / "run.json").read_text())
    statuses = {r["image"]: r["status"] for r in run["images"]}
    assert statuses == {f"{STEMS[0]}.png": "ok", f"{STEMS[1]}.png": "skipped",
                        f"{STEMS[2]}.png": "ok"}


def test_points_outside_the_image_fail_that_image_or_are_clipped(aerial, tmp_path, capsys):
    pts = dict(aerial.points)
    name = f"{STEMS[0]}.png"
    pts[name] = pts[name].appended(np.array([[400.0, 5.0], [3.0, -2.0]]), np.array([1, 1]))
    f = write_points_csv(tmp_path / "p.csv", pts)
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", aerial.images, "--points", f, "--out", out, "-q")
    assert code == 1
    # the header is line 1 and the 20 points of this image lines 2..21: the added ones 22, 23
    assert "2 point(s) outside the image of 160 rows x 200 columns" in err
    assert "line 22 (row=400, col=5)" in err and "line 23 (row=3, col=-2)" in err
    assert not (out / f"{STEMS[0]}.png").exists()
    assert (out / f"{STEMS[1]}.png").exists() and (out / f"{STEMS[2]}.png").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["images"][0]["status"] == "failed" and "line 22" in run["images"][0]["error"]

    out2 = tmp_path / "clipped"
    code, err = _run(capsys, "expand", aerial.images, "--points", f, "--out", out2, "--clip", "-q")
    assert code == 0, err
    assert "clipped" in err
    lab = read_label_image(out2 / name)
    assert lab[159, 5] == 1 and lab[3, 0] == 1


def test_corrupt_image_fails_alone_and_summary_names_it(aerial, tmp_path, capsys):
    images = _copy_images(aerial, tmp_path / "imgs")
    data = (images / f"{STEMS[1]}.png").read_bytes()
    (images / f"{STEMS[1]}.png").write_bytes(data[: len(data) // 3])
    f = write_points_csv(tmp_path / "p.csv", aerial.points)
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", images, "--points", f, "--out", out)
    assert code == 1
    assert f"failed: {STEMS[1]}.png:" in err and "cannot read image" in err
    assert "expanded 2 of 3 image(s)" in err
    assert _files(out) == sorted([f"{STEMS[0]}.png", f"{STEMS[0]}_overlay.png",
                                  f"{STEMS[2]}.png", f"{STEMS[2]}_overlay.png", "run.json"])
    run = json.loads((out / "run.json").read_text())
    assert run["summary"] == {"ok": 2, "failed": 1, "skipped": 0}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Name,Row,Colum,Label\n{n},1,2,1\n", "line 1: missing column(s) 'Column' (found 'Colum'"),
        ("Name,Row,Column,Label\n{n},1,2,1\n{n},oops,2,1\n", "line 3: Row 'oops' is not a number"),
        ("Name,Row,Column,Label\n{n},1,NaN,1\n", "line 2: Column is 'NaN'"),
    ],
)
def test_bad_points_file_stops_before_writing(aerial, tmp_path, capsys, text, expected):
    f = tmp_path / "p.csv"
    f.write_text(text.format(n=f"{STEMS[0]}.png"))
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", aerial.images, "--points", f, "--out", out)
    assert code == 2
    assert f"error: {f}: {expected}" in err
    assert not out.exists()


def test_unknown_class_name_with_classes_file(aerial, tmp_path, capsys):
    classes = write_classes_csv(tmp_path / "c.csv", ClassTable({1: "Road", 2: "Water"}))
    f = tmp_path / "p.csv"
    f.write_text(f"Name,Row,Column,Label\n{STEMS[0]}.png,1,1,Road\n{STEMS[0]}.png,2,2,Watr\n")
    code, err = _run(capsys, "expand", aerial.images, "--points", f, "--classes", classes,
                     "--out", tmp_path / "out")
    assert code == 2
    assert "unknown class name(s) 'Watr' (line 3, did you mean 'Water'?)" in err
    assert not (tmp_path / "out").exists()


def test_empty_folder_and_missing_path(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    f = tmp_path / "p.csv"
    f.write_text("Name,Row,Column,Label\na.png,1,1,1\n")
    code, err = _run(capsys, "expand", tmp_path / "empty", "--points", f, "--out", tmp_path / "o")
    assert code == 2 and "the folder holds no images" in err
    code, err = _run(capsys, "expand", tmp_path / "nope", "--points", f, "--out", tmp_path / "o")
    assert code == 2 and "nope: no such file or folder" in err
    assert not (tmp_path / "o").exists()


def test_existing_output_is_refused_untouched_then_overwritten(aerial, tmp_path, capsys):
    f = write_points_csv(tmp_path / "p.csv", {k: v for k, v in aerial.points.items()
                                              if k.startswith(STEMS[0])})
    img = aerial.images / f"{STEMS[0]}.png"
    out = tmp_path / "out"
    out.mkdir()
    sentinel = b"user's precious file"
    (out / f"{STEMS[0]}.png").write_bytes(sentinel)
    code, err = _run(capsys, "expand", img, "--points", f, "--out", out, "-q")
    assert code == 2 and "refusing to overwrite" in err and "--overwrite" in err
    assert (out / f"{STEMS[0]}.png").read_bytes() == sentinel
    assert _files(out) == [f"{STEMS[0]}.png"]
    code, err = _run(capsys, "expand", img, "--points", f, "--out", out, "-q", "--overwrite")
    assert code == 0, err
    assert read_label_image(out / f"{STEMS[0]}.png").shape == (160, 200)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_sam2_backend_without_checkpoint_is_a_clear_error(aerial, tmp_path, capsys):
    f = write_points_csv(tmp_path / "p.csv", aerial.points)
    code, err = _run(capsys, "expand", aerial.images, "--points", f, "--out", tmp_path / "o",
                     "--backend", "sam2", "-q")
    assert code == 2
    assert "error: backend 'sam2':" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "run.json").exists()


# -------------------------------------------------------------------------------- simulate


@pytest.mark.parametrize("strategy", ["random", "grid"])
def test_simulate_writes_metrics_points_and_masks(aerial, tmp_path, capsys, strategy):
    out = tmp_path / "sim"
    code, err = _run(capsys, "simulate", "--images", aerial.images, "--ground-truth", aerial.masks,
                     "--points-per-image", 15, "--strategy", strategy, "--seeds", 0, 1,
                     "--save-masks", "--out", out, "-q")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["strategy"] == strategy and m["points_per_image"] == 15 and m["seeds"] == [0, 1]
    assert m["backend"].startswith("superpixel")
    for key in ("pixel_accuracy", "mean_class_accuracy", "miou"):
        assert 0 <= m[key] <= 1
        assert m[key] == pytest.approx(np.mean([s[key] for s in m["per_seed"]]))
    # measured 0.85 (random) and 0.87 (grid) pixel accuracy with 15 points on these crops
    assert m["pixel_accuracy"] > 0.65
    assert m["images_scored"] == 3
    for seed in (0, 1):
        pf = read_points_file(out / f"points_seed{seed}.csv")
        assert sorted(pf.points) == sorted(f"{s}.png" for s in STEMS)
        cm = ConfusionMatrix()
        for stem in STEMS:
            ps = pf.points[f"{stem}.png"]
            gt = read_label_image(aerial.masks / f"{stem}.png")
            rows, cols = ps.pixel_indices()
            assert len(ps) == 15
            assert not np.any(gt[rows, cols] == 255)  # never on unannotated pixels
            np.testing.assert_array_equal(ps.labels, gt[rows, cols])  # oracle labels
            pred = read_label_image(out / "masks" / f"seed{seed}" / f"{stem}.png")
            np.testing.assert_array_equal(pred[rows, cols], ps.labels)
            cm.update(gt, pred)
        per_seed = m["per_seed"][seed]
        assert per_seed["seed"] == seed
        assert per_seed["miou"] == pytest.approx(cm.scores()["miou"])
        assert {int(k) for k in per_seed["per_class_iou"]} == set(cm.scores()["per_class_iou"])


def test_simulate_is_reproducible_and_seeds_differ(aerial, tmp_path, capsys):
    args = ["simulate", "--images", aerial.images, "--ground-truth", aerial.masks,
            "--points-per-image", 5, "--seeds", 3, 4, "-q"]
    assert _run(capsys, *args, "--out", tmp_path / "a")[0] == 0
    assert _run(capsys, *args, "--out", tmp_path / "b")[0] == 0
    a3 = (tmp_path / "a" / "points_seed3.csv").read_text()
    assert a3 == (tmp_path / "b" / "points_seed3.csv").read_text()
    assert a3 != (tmp_path / "a" / "points_seed4.csv").read_text()


def test_simulate_ground_truth_of_another_size_fails_that_image(aerial, tmp_path, capsys):
    gt_dir = tmp_path / "gt"
    shutil.copytree(aerial.masks, gt_dir)
    gt = read_label_image(gt_dir / f"{STEMS[2]}.png")
    write_label_image(gt_dir / f"{STEMS[2]}.png", gt[:100])
    out = tmp_path / "sim"
    code, err = _run(capsys, "simulate", "--images", aerial.images, "--ground-truth", gt_dir,
                     "--points-per-image", 5, "--out", out)
    assert code == 1
    assert f"failed: {STEMS[2]}.png: ground truth" in err
    assert "has 100 rows x 200 columns but the image has 160 x 200" in err
    m = json.loads((out / "metrics.json").read_text())
    assert m["images_scored"] == 2 and m["images_total"] == 3
    assert sorted(read_points_file(out / "points_seed0.csv").points) == [
        f"{STEMS[0]}.png", f"{STEMS[1]}.png"]


def test_simulate_image_without_mask_and_empty_folder(aerial, tmp_path, capsys):
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    shutil.copy(aerial.masks / f"{STEMS[0]}.png", gt_dir)
    images = _copy_images(aerial, tmp_path / "imgs", STEMS[:2])
    code, err = _run(capsys, "simulate", "--images", images, "--ground-truth", gt_dir,
                     "--points-per-image", 3, "--out", tmp_path / "sim", "-q")
    assert code == 1 and f"{STEMS[1]}.png: no ground-truth mask named {STEMS[1]}.*" in err
    (tmp_path / "none").mkdir()
    code, err = _run(capsys, "simulate", "--images", tmp_path / "none", "--ground-truth", gt_dir,
                     "--points-per-image", 3, "--out", tmp_path / "sim2")
    assert code == 2 and "holds no images" in err


def test_simulate_suggest_strategy(aerial, tmp_path, capsys):
    pytest.importorskip("napari_sseg.core.suggest")
    out = tmp_path / "sim"
    code, err = _run(capsys, "simulate", "--images", aerial.images, "--ground-truth", aerial.masks,
                     "--points-per-image", 7, "--strategy", "suggest", "--batch-size", 3,
                     "--seeds", 0, "--out", out, "-q")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["strategy"] == "suggest" and m["batch_size"] == 3
    assert m["pixel_accuracy"] > 0.65  # measured 0.84 with 7 suggested points
    pf = read_points_file(out / "points_seed0.csv")
    for stem in STEMS:
        ps = pf.points[f"{stem}.png"]
        gt = read_label_image(aerial.masks / f"{stem}.png")
        rows, cols = ps.pixel_indices()
        assert len(ps) == 7
        assert len(set(zip(rows.tolist(), cols.tolist()))) == 7
        np.testing.assert_array_equal(ps.labels, gt[rows, cols])


def test_simulate_suggest_core_loop_only_reveals_oracle_labels(aerial):
    pytest.importorskip("napari_sseg.core.suggest")
    from napari_sseg.core.progress import run_generator
    from napari_sseg.core.simulate import iter_simulate

    img = read_image(aerial.images / f"{STEMS[0]}.png")
    gt = read_label_image(aerial.masks / f"{STEMS[0]}.png")
    gt = gt.copy()
    gt[:, :40] = 255  # unannotated strip: never suggested
    events = []
    pts, exp = run_generator(iter_simulate(img, gt, 8, strategy="suggest", batch_size=3, seed=1),
                             events.append)
    rows, cols = pts.pixel_indices()
    assert len(pts) == 8 and np.all(cols >= 40)
    np.testing.assert_array_equal(pts.labels, gt[rows, cols])
    np.testing.assert_array_equal(exp.labels[rows, cols], pts.labels)
    assert any("suggesting points 6/8" in e.message for e in events)
    with pytest.raises(ValueError, match="does not match the image"):
        run_generator(iter_simulate(img, gt[:10], 8))


# ----------------------------------------------------------------------------------- score


def test_score_matches_the_confusion_matrix_and_reports_failures(aerial, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    cm = ConfusionMatrix()
    rng = np.random.default_rng(0)
    for stem in STEMS:
        gt = read_label_image(aerial.masks / f"{stem}.png")
        p = np.where(rng.random(gt.shape) < 0.8, gt, 1).astype(np.uint8)
        p[p == 255] = 0
        write_label_image(pred / f"{stem}.png", p)
        cm.update(gt, p)
    code = main(["score", str(pred), str(aerial.masks), "--out", str(tmp_path / "s.json"), "-q"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    assert result == json.loads((tmp_path / "s.json").read_text())
    expected = cm.scores()
    for key in ("pixel_accuracy", "mean_class_accuracy", "miou"):
        assert result[key] == pytest.approx(expected[key])
    assert result["images_scored"] == 3

    write_label_image(pred / f"{STEMS[1]}.png", np.zeros((10, 10), np.uint8))
    (pred / f"{STEMS[2]}.png").unlink()
    code = main(["score", str(pred), str(aerial.masks)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"prediction {STEMS[1]}.png has shape (10, 10)" in captured.err
    assert f"no prediction named {STEMS[2]}.*" in captured.err
    assert json.loads(captured.out)["images_scored"] == 1


# --------------------------------------------------------------------------------- suggest


def test_suggest_writes_unlabelled_points_that_expand_accepts_once_labelled(aerial, tmp_path,
                                                                             capsys):
    pytest.importorskip("napari_sseg.core.suggest")
    stem = STEMS[0]
    img = aerial.images / f"{stem}.png"
    f = write_points_csv(tmp_path / "p.csv", {f"{stem}.png": aerial.points[f"{stem}.png"]})
    out = tmp_path / "next.csv"
    code, err = _run(capsys, "suggest", img, "--points", f, "-n", 4, "--out", out, "-q")
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0] == "Name,Row,Column,Label" and len(lines) == 5
    rc = np.array([[float(v) for v in ln.split(",")[1:3]] for ln in lines[1:]])
    assert np.all((rc >= 0) & (rc < [160, 200]))
    assert all(ln.endswith(",") for ln in lines[1:])
    code, err = _run(capsys, "suggest", img, "--points", f, "-n", 4, "--out", out)
    assert code == 2 and "refusing to overwrite" in err
    far = tmp_path / "far.csv"
    far.write_text(f"Name,Row,Column,Label\n{stem}.png,5,5,1\n{stem}.png,500,1,1\n")
    code, err = _run(capsys, "suggest", img, "--points", far, "-n", 2, "--out", tmp_path / "x.csv")
    assert code == 2 and "line 3 (row=500, col=1)" in err and "--clip" in err
    assert not (tmp_path / "x.csv").exists()
    code, err = _run(capsys, "suggest", img, "-n", 2, "--out", tmp_path / "first.json", "-q")
    assert code == 0, err
    assert len(json.loads((tmp_path / "first.json").read_text())["images"][f"{stem}.png"]) == 2


# ------------------------------------------------------------------------------------- misc


def test_cli_import_does_not_pull_heavy_modules():
    code = ("import sys, napari_sseg.cli, napari_sseg.io; "
            "heavy = [m for m in ('torch', 'sam2', 'napari', 'PyQt6', 'qtpy', 'PIL', 'tifffile') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_installed_console_script_runs():
    script = Path(sys.executable).parent / "napari-sseg"
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("napari-sseg ")


def test_console_script_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "expand" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["expand", "x"])  # --points and --out are required
    assert exc.value.code == 2
    assert "--points" in capsys.readouterr().err


# ------------------------------------------------------------------------------- SAM2 backend


@pytest.fixture(scope="module")
def random_sam2_checkpoint(tmp_path_factory):
    """A SAM2.1 tiny checkpoint with random weights, saved like the official files."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from napari_sseg.backends.sam2 import build_sam2_model

    torch.manual_seed(0)
    model = build_sam2_model("tiny", device="cpu")
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.mark.sam2
def test_expand_with_the_sam2_backend_end_to_end(aerial, random_sam2_checkpoint, tmp_path,
                                                 capsys):
    stem = STEMS[0]
    ps = aerial.points[f"{stem}.png"]
    f = write_points_csv(tmp_path / "p.csv", {f"{stem}.png": ps})
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", aerial.images / f"{stem}.png", "--points", f,
                     "--out", out, "--backend", "sam2", "--checkpoint", random_sam2_checkpoint,
                     "--device", "cpu", "--cache-dir", tmp_path / "cache", "-q")
    assert code == 0, err
    run = json.loads((out / "run.json").read_text())
    assert "sam2" in run["backend"].lower()
    assert run["settings"]["checkpoint"] == str(random_sam2_checkpoint)
    lab = read_label_image(out / f"{stem}.png")
    assert lab.shape == (160, 200)
    rows, cols = ps.pixel_indices()
    np.testing.assert_array_equal(lab[rows, cols], ps.labels)
    assert set(np.unique(lab)) <= set(ps.labels.tolist())


@pytest.mark.sam2
def test_expand_stack_with_the_sam2_backend_propagates_through_the_planes(
        random_sam2_checkpoint, tmp_path, capsys):
    import tifffile

    from napari_sseg.io.points_files import write_napari_points_csv

    cc = np.arange(32)[None, None, :]
    vol = np.broadcast_to(np.where(cc < 16, 200, 40), (2, 32, 32)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", vol, photometric="minisblack")
    pts = PointSet([[16, 4], [16, 28]], [1, 2], planes=[0, 0])
    write_napari_points_csv(tmp_path / "p.csv", pts)
    out = tmp_path / "out"
    code, err = _run(capsys, "expand", tmp_path / "v.tif", "--points", tmp_path / "p.csv",
                     "--out", out, "--backend", "sam2", "--checkpoint", random_sam2_checkpoint,
                     "--device", "cpu", "-q")
    assert code == 0, err
    lab = tifffile.imread(out / "v.tif")
    assert lab.shape == (2, 32, 32)
    assert lab[0, 16, 4] == 1 and lab[0, 16, 28] == 2
    assert "propagated-masks" in (out / "run.json").read_text()  # SAM2's video path ran
