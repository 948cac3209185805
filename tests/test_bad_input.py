"""Catalogue of bad inputs to the command line, one case per kind (issue 15).

Kinds: data loss, scoring that lies, tracebacks, misleading messages, silent guesses. Every case
asserts the exit code (2: bad input stops the run before any image, 1: some image failed), the
message (one line naming the file, line or option; never a traceback) and the state of the
output folder (nothing written, no stale or half-written file). Images are tiny (24 x 32) so the
whole catalogue runs in seconds.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from napari_sseg.cli import main
from napari_sseg.io import read_label_image, write_label_image, write_rgb

H, W = 24, 32
#: the command line as a user runs it, in a fresh interpreter
CLI = [sys.executable, "-c", "import sys; from napari_sseg.cli import main; sys.exit(main())"]


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.uint8)
    img[:, W // 2:] = 200
    return img + rng.integers(0, 20, img.shape, dtype=np.uint8)


@pytest.fixture
def data(tmp_path) -> Path:
    """``imgs/a0.png, a1.png``, binary 0/255 ground truth ``gt/``, and ``p.csv`` with 2 classes."""
    (tmp_path / "imgs").mkdir()
    (tmp_path / "gt").mkdir()
    for i in range(2):
        write_rgb(tmp_path / "imgs" / f"a{i}.png", _image(i))
        gt = np.zeros((H, W), np.uint8)
        gt[:, W // 2:] = 255
        write_label_image(tmp_path / "gt" / f"a{i}.png", gt)
    rows = [(4, 4, 1), (10, 28, 2), (20, 3, 1), (18, 25, 2)]
    (tmp_path / "p.csv").write_text("Name,Row,Column,Label\n" + "".join(
        f"a{i}.png,{r},{c},{lab}\n" for i in range(2) for r, c, lab in rows))
    return tmp_path


def run(capsys, *argv) -> tuple[int, str, str]:
    """Run the CLI in this process; (exit code, stderr, stdout). Never a traceback."""
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return code, cap.err, cap.out


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------- data loss


def test_out_equal_to_the_image_folder_is_refused_even_with_overwrite(data, capsys):
    before = snapshot(data / "imgs")
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "imgs", "--overwrite")
    assert code == 2
    assert "is the folder of the input images" in err and "--out" in err
    assert snapshot(data / "imgs") == before  # the images are untouched, nothing added


def test_out_holding_the_single_input_image_is_refused(data, capsys):
    before = snapshot(data / "imgs")
    code, err, _ = run(capsys, "expand", data / "imgs" / "a0.png", "--points", data / "p.csv",
                       "--out", data / "imgs", "--overwrite", "-q")
    assert code == 2 and "is the folder of the input images" in err
    assert snapshot(data / "imgs") == before


def test_simulate_out_equal_to_the_ground_truth_folder_is_refused(data, capsys):
    before = snapshot(data / "gt")
    code, err, _ = run(capsys, "simulate", "--images", data / "imgs", "--ground-truth",
                       data / "gt", "--points-per-image", 4, "--out", data / "gt", "--overwrite")
    assert code == 2 and "is the folder of the input images" in err
    assert snapshot(data / "gt") == before


def test_failed_image_in_a_rerun_leaves_no_stale_outputs(data, capsys):
    out = data / "out"
    assert run(capsys, "expand", data / "imgs", "--points", data / "p.csv", "--out", out,
               "-q")[0] == 0
    assert files(out) == ["a0.png", "a0_overlay.png", "a1.png", "a1_overlay.png", "run.json"]
    (data / "imgs" / "a1.png").write_bytes((data / "imgs" / "a1.png").read_bytes()[:100])
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv", "--out", out,
                       "--overwrite", "-q")
    assert code == 1 and "a1.png" in err and "truncated" in err
    # the failed image's previous mask and overlay are gone: nothing looks current beside a
    # record that says it failed
    assert files(out) == ["a0.png", "a0_overlay.png", "run.json"]
    import json

    rec = {e["key"]: e for e in json.loads((out / "run.json").read_text())["images"]}
    assert rec["a1.png"]["status"] == "failed" and rec["a0.png"]["status"] == "ok"


def test_image_without_points_in_a_rerun_leaves_no_stale_outputs(data, capsys):
    out = data / "out"
    assert run(capsys, "expand", data / "imgs", "--points", data / "p.csv", "--out", out,
               "-q")[0] == 0
    lines = (data / "p.csv").read_text().splitlines()
    (data / "p.csv").write_text("\n".join(line for line in lines if "a1.png" not in line))
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv", "--out", out,
                       "--overwrite", "-q")
    assert code == 1 and "a1.png" in err
    assert files(out) == ["a0.png", "a0_overlay.png", "run.json"]


def test_full_disk_while_writing_the_overlay_leaves_no_half_pair(data, capsys, monkeypatch):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to see which file is being written")
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up while the overlay of a1 is flushed
        if "a1_overlay" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = data / "out"
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv", "--out", out,
                       "-q")
    assert code == 1
    assert "No space left on device" in err and str(out / "a1_overlay.png") in err
    # a1's mask was written (to its temporary file) before the overlay failed: neither appears
    assert files(out) == ["a0.png", "a0_overlay.png", "run.json"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"),
                    reason="mounting a tiny tmpfs needs root")
def test_full_disk_on_a_real_tiny_file_system(data, tmp_path, capsys):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        rng = np.random.default_rng(3)  # noise compresses badly: a few files fill 24 kB
        for i in range(2):
            write_rgb(data / "imgs" / f"a{i}.png", rng.integers(0, 255, (H, 64, 3), np.uint8))
        out = mnt / "out"
        code = main(["expand", str(data / "imgs"), "--points", str(data / "p.csv"),
                     "--out", str(out), "-q"])
        err = capsys.readouterr().err
        assert code in (1, 2) and "Traceback" not in err
        assert "No space left on device" in err and str(out) in err
        names = files(out)
        for stem in ("a0", "a1"):  # a mask and its overlay exist together or not at all
            assert (f"{stem}.png" in names) == (f"{stem}_overlay.png" in names)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="running as the user 'nobody' needs root and setpriv")
def test_output_folder_without_write_permission_as_an_ordinary_user(data):
    # root ignores permissions, so the CLI runs as 'nobody' in a world-readable copy
    base = Path("/tmp") / f"sseg-perm-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(data, base)
    locked = base / "locked"
    locked.mkdir()
    try:
        for p in [base, *base.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        locked.chmod(0o555)
        try:
            out = subprocess.run(
                ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                 *CLI, "expand", str(base / "imgs"),
                 "--points", str(base / "p.csv"), "--out", str(locked / "out")],
                capture_output=True, text=True, env={**os.environ, "HOME": "/tmp"})
        except OSError as exc:
            pytest.skip(f"cannot run the interpreter as 'nobody': {exc}")
        if out.returncode in (126, 127) or "No module named" in out.stderr or (
                "Permission denied: '" in out.stderr):
            pytest.skip(f"the package is not readable by 'nobody': {out.stderr[-200:]}")
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        assert "permission denied" in out.stderr and str(locked) in out.stderr
        assert not (locked / "out").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------- scoring that lies


def _masks(folder: Path, value_fn) -> Path:
    folder.mkdir()
    for i in range(2):
        write_label_image(folder / f"a{i}.png", value_fn())
    return folder


def test_score_binary_0_255_masks_score_the_foreground(data, capsys):
    zero = _masks(data / "zero", lambda: np.zeros((H, W), np.uint8))
    code, err, out = run(capsys, "score", zero, data / "gt")
    import json

    res = json.loads(out)
    assert code == 0
    # an all-zero prediction no longer scores 1.0: 255 is read as the foreground class
    assert res["miou"] == pytest.approx(0.25)  # background IoU 0.5, foreground IoU 0
    assert res["ignore_index"] is None and "binary masks" in err and "--ignore-index 255" in err


def test_score_explicit_255_on_binary_masks_warns_that_one_class_is_left(data, capsys):
    zero = _masks(data / "zero", lambda: np.zeros((H, W), np.uint8))
    code, err, out = run(capsys, "score", zero, data / "gt", "--ignore-index", "255")
    assert code == 0 and "one class only (0)" in err and "scores 1.0" in err


def test_score_ground_truth_all_ignore_scores_nothing_and_fails(data, capsys):
    zero = _masks(data / "zero", lambda: np.zeros((H, W), np.uint8))
    gt = _masks(data / "all255", lambda: np.full((H, W), 255, np.uint8))
    code, err, out = run(capsys, "score", zero, gt, "--out", data / "m.json")
    assert code == 1
    assert "nothing to score" in err and "--ignore-index none" in err
    assert '"miou": null' in out


def test_score_predictions_coded_0_1_against_0_255(data, capsys):
    ones = _masks(data / "ones", lambda: (np.arange(W)[None, :].repeat(H, 0) >= W // 2)
                  .astype(np.uint8))
    code, err, _ = run(capsys, "score", ones, data / "gt")
    assert code == 0 and "coded the same way" in err


def test_score_pred_dir_equal_to_gt_dir_is_refused(data, capsys):
    code, err, _ = run(capsys, "score", data / "gt", data / "gt")
    assert code == 2 and "same folder" in err


def test_simulate_binary_masks_says_what_was_assumed(data, capsys):
    out = data / "sim"
    code, err, _ = run(capsys, "simulate", "--images", data / "imgs", "--ground-truth",
                       data / "gt", "--points-per-image", 6, "--seeds", 0, "--out", out,
                       "--save-masks", "-q")
    assert code == 0 and "binary masks" in err
    import json

    m = json.loads((out / "metrics.json").read_text())
    assert m["settings"]["ignore_index"] is None
    assert set(m["per_class_iou"]) == {"0", "255"}  # the foreground is scored
    assert set(np.unique(read_label_image(out / "masks" / "seed0" / "a0.png"))) <= {0, 255}


def test_simulate_ground_truth_all_ignore_is_refused_before_running(data, capsys):
    gt = _masks(data / "all255", lambda: np.full((H, W), 255, np.uint8))
    code, err, _ = run(capsys, "simulate", "--images", data / "imgs", "--ground-truth", gt,
                       "--points-per-image", 4, "--out", data / "sim")
    assert code == 2 and "nothing to score" in err
    assert not (data / "sim").exists()


# ------------------------------------------------------------------------------ tracebacks


@pytest.mark.parametrize("label", ["1e20", "99999999999999999999"])
def test_huge_numeric_labels(data, capsys, label):
    (data / "p.csv").write_text(f"Name,Row,Column,Label\na0.png,3,3,{label}\na0.png,9,9,1\n")
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 2 and "line 2" in err and label in err and "too large" in err
    assert not (data / "out").exists()


def test_stray_quote_past_the_csv_field_limit(data, capsys):
    body = "".join(f"a0.png,{i % H},{i % W},1\n" for i in range(9000))  # about 130 kB
    (data / "p.csv").write_text("Name,Row,Column,Label\na0.png,1,1,2\n"
                                f'a0.png,2,2,"coral\n{body}')
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 2 and "line 3" in err and "quote" in err
    assert len(err) < 1000  # one line, not the swallowed 130 kB
    assert not (data / "out").exists()


def test_suggest_out_naming_a_folder(data, capsys):
    code, err, _ = run(capsys, "suggest", data / "imgs" / "a0.png", "-n", 3, "--out",
                       data / "imgs", "--overwrite")
    assert code == 2 and "is a folder" in err
    assert files(data / "imgs") == ["a0.png", "a1.png"]


def test_unexpected_error_is_one_line_with_exit_3(data, capsys, monkeypatch):
    import napari_sseg.cli.score as score

    def boom(args):
        raise TypeError("something unforeseen")

    monkeypatch.setattr(score, "run", boom)
    parser_code = main(["score", str(data / "gt"), str(data / "imgs")])
    err = capsys.readouterr().err
    assert parser_code == 3 and "internal error" in err and "Traceback" not in err


# -------------------------------------------------------------------- misleading messages


def test_header_only_points_file_says_it_has_no_points(data, capsys):
    (data / "p.csv").write_text("Name,Row,Column,Label\n")
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 2 and "header but no points" in err and "image" not in err.split("no points")[0]
    assert not (data / "out").exists()


def test_class_id_70000_is_refused_before_any_expansion(data, capsys):
    text = (data / "p.csv").read_text().replace("a1.png,10,28,2", "a1.png,10,28,70000")
    (data / "p.csv").write_text(text)
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 2
    assert "70000" in err and "line 7" in err and "--classes" in err and "TIFF" not in err
    assert err.count("error:") == 1  # said once, not once per image
    assert not (data / "out").exists()


def test_class_id_70000_in_the_classes_file(data, capsys):
    (data / "classes.csv").write_text("id,name\n1,coral\n70000,sand\n")
    text = (data / "p.csv").read_text().replace(",1\n", ",coral\n").replace(",2\n", ",sand\n")
    (data / "p.csv").write_text(text)
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--classes", data / "classes.csv", "--out", data / "out")
    assert code == 2 and "classes.csv" in err and "70000" in err


def test_names_that_differ_only_by_unicode_normalisation_match(data, capsys):
    nfd = unicodedata.normalize("NFD", "café")
    (data / "imgs" / "a0.png").rename(data / "imgs" / f"{nfd}.png")
    (data / "imgs" / "a1.png").unlink()
    nfc = unicodedata.normalize("NFC", "café")
    (data / "p.csv").write_text(f"Name,Row,Column,Label\n{nfc}.png,3,3,1\n{nfc}.png,20,28,2\n")
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "out", "-q")
    assert code == 0, err
    assert len(files(data / "out")) == 3


def test_negative_seed_names_the_option(data, capsys):
    code, err, _ = run(capsys, "simulate", "--images", data / "imgs", "--ground-truth",
                       data / "gt", "--points-per-image", 4, "--seeds", "-1", "--out",
                       data / "sim")
    assert code == 2 and "--seeds -1" in err
    assert not (data / "sim").exists()
    code, err, _ = run(capsys, "suggest", data / "imgs" / "a0.png", "-n", 2, "--seed", "-5",
                       "--out", data / "s.csv")
    assert code == 2 and "--seed -5" in err


# ------------------------------------------------------------------------- silent guesses


def test_two_columns_with_the_same_name(data, capsys):
    (data / "p.csv").write_text("Name,Row,Column,Label,Label\na0.png,3,3,1,2\n")
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 2 and "line 1" in err and "columns 4 ('Label') and 5 ('Label')" in err


def test_two_classes_on_the_same_pixel(data, capsys):
    rows = "".join(f"a0.png,{r},{c},1\n" for r in range(4) for c in range(5)) + "a0.png,2.2,1.8,2\n"
    (data / "p.csv").write_text("Name,Row,Column,Label\n" + rows + "a0.png,20,28,2\n")
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 2 and "same pixel" in err
    assert "line 14 (class 1)" in err and "line 22 (class 2)" in err  # both lines, both classes
    assert not (data / "out").exists()


def test_stray_quote_merging_lines_is_said(data, capsys):
    body = "".join(f"a0.png,{i},{i},{1 + i % 2}\n" for i in range(11))
    (data / "p.csv").write_text(f'Name,Row,Column,Label\na0.png,1,1,"sand\n{body}')
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 2 and "line 2" in err and "quote" in err and "lines 2-13" in err
    assert "mix" not in err


def test_suggest_fewer_points_than_asked_is_said(data, capsys):
    code, err, _ = run(capsys, "suggest", data / "imgs" / "a0.png", "-n", 100000, "--out",
                       data / "s.csv")
    assert code == 0 and "asked for 100000" in err and f"only {H * W}" in err
    assert len((data / "s.csv").read_text().splitlines()) == H * W + 1


def test_napari_points_with_three_axes_for_a_2d_image(data, capsys):
    (data / "p.csv").write_text("index,axis-0,axis-1,axis-2,label\n0,0,3,3,1\n1,2,20,28,2\n")
    code, err, _ = run(capsys, "expand", data / "imgs" / "a0.png", "--points", data / "p.csv",
                       "--out", data / "out")
    # said either by the pre-run check (3 coordinate axes) or by the stack reader (issue 18)
    assert code == 2 and "2D" in err and str(data / "p.csv") in err
    assert not (data / "out").exists()


def test_subprocess_never_prints_a_traceback(data):
    """The installed entry point, as a user runs it, on three of the cases above."""
    (data / "big.csv").write_text("Name,Row,Column,Label\na0.png,3,3,1e20\n")
    for argv in (["expand", str(data / "imgs"), "--points", str(data / "big.csv"), "--out",
                  str(data / "o")],
                 ["suggest", str(data / "imgs" / "a0.png"), "-n", "2", "--out",
                  str(data / "imgs")],
                 ["score", str(data / "nope"), str(data / "gt")]):
        res = subprocess.run([*CLI, *argv],
                             capture_output=True, text=True)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr and res.stderr.startswith("napari-sseg: error:")


# ------------------------------------------------------------- more cases found by trying


@pytest.mark.parametrize("points, argv, expected", [
    # points file that is an image, not text
    (None, ["--points", "{d}/imgs/a0.png"], "is not a text file"),
    # Latin-1 bytes: the line and column of the first byte that is not UTF-8
    (b"Name,Row,Column,Label\ncaf\xe9.png,3,3,1\n", [], "line 2, column 4: byte 0xe9"),
    # the points file given as a folder
    (None, ["--points", "{d}/imgs"], "is a folder, not a points file"),
    # header split by ';', rows by ','
    ("Name;Row;Column;Label\na0.png,3,3,1\n", [], "this line holds ','"),
    # a coordinate far outside any image (numpy would overflow when rounding it)
    ("Name,Row,Column,Label\na0.png,1e300,3,1\n", [], "far outside any image"),
    # two CSV files joined: the second header is said, not read as a bad Row
    ("Name,Row,Column,Label\na0.png,3,3,1\nName,Row,Column,Label\na0.png,9,9,2\n", [],
     "line 3 repeats the header of line 1"),
    # JSON key given twice (json keeps the last one silently)
    ('{"points": [{"row": 1, "col": 1, "label": 1, "row": 5}]}', [], "given twice"),
    # JSON label that is neither an id nor a name
    ('{"points": [{"row": 1, "col": 1, "label": true}]}', [], "neither an integer class id"),
])
def test_more_bad_points_files(data, capsys, points, argv, expected):
    suffix = ".json" if isinstance(points, str) and points.startswith("{") else ".csv"
    path = data / f"q{suffix}"
    if isinstance(points, bytes):
        path.write_bytes(points)
    elif points is not None:
        path.write_text(points)
    argv = [a.format(d=data) for a in argv] or ["--points", str(path)]
    code, err, _ = run(capsys, "expand", data / "imgs", *argv, "--out", data / "out")
    assert code == 2 and expected in err, err
    assert err.count("\n") == 1  # one line
    assert not (data / "out").exists()


def test_images_argument_that_is_not_an_image(data, capsys):
    code, err, _ = run(capsys, "expand", data / "p.csv", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 2 and "not an image file" in err


def test_suggest_out_equal_to_the_points_file(data, capsys):
    before = (data / "p.csv").read_bytes()
    code, err, _ = run(capsys, "suggest", data / "imgs" / "a0.png", "--points", data / "p.csv",
                       "-n", 2, "--out", data / "p.csv", "--overwrite")
    assert code == 2 and "would overwrite the input" in err
    assert (data / "p.csv").read_bytes() == before


def test_class_names_differing_by_case_are_one_class_and_said(data, capsys):
    (data / "p.csv").write_text("Name,Row,Column,Label\na0.png,3,3,coral\na0.png,20,28,Coral\n"
                                "a0.png,20,3,sand\n")
    code, err, _ = run(capsys, "expand", data / "imgs" / "a0.png", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 0 and "differ only by case" in err and "line 3" in err
    import json

    assert [c["name"] for c in json.loads((data / "out" / "classes.json").read_text())
            ["classes"]] == ["coral", "sand"]


def test_excel_sep_line_names_the_delimiter(tmp_path):
    from napari_sseg.io import read_points_file

    f = tmp_path / "p.csv"
    f.write_text("sep=;\nName;Row;Column;Label\na0.png;3;4;1\na0.png;x;4;1\n")
    with pytest.raises(ValueError, match="line 4: Row 'x'"):  # line numbers still count it
        read_points_file(f)
    f.write_text("sep=;\nName;Row;Column;Label\na0.png;3;4;1\n")
    assert read_points_file(f).points["a0.png"].coords.tolist() == [[3, 4]]


def test_points_file_naming_no_image_of_the_folder(data, capsys):
    (data / "p.csv").write_text("Name,Row,Column,Label\nzz0.png,3,3,1\nzz1.png,9,9,2\n")
    code, err, _ = run(capsys, "expand", data / "imgs", "--points", data / "p.csv",
                       "--out", data / "out")
    assert code == 2 and "no Name matches an image" in err and "'zz0.png'" in err
    assert not (data / "out").exists()
