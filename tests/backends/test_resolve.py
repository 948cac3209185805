"""Backend choice and checkpoint lookup (no torch needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from napari_sseg.backends import (
    MODEL_FILES,
    find_checkpoint,
    resolve_backend,
    user_checkpoint_dir,
)


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No checkpoint anywhere: empty cwd, empty user cache, no env vars."""
    monkeypatch.delenv("NAPARI_SSEG_CHECKPOINT", raising=False)
    monkeypatch.delenv("NAPARI_SSEG_CHECKPOINT_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("napari_sseg.backends._source_checkout_dir", lambda: None)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_import_is_light():
    code = ("import sys, napari_sseg.backends, napari_sseg.core.fusion;"
            "bad = [m for m in ('torch', 'sam2', 'torchvision') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lookup_order(clean_env, monkeypatch):
    name = MODEL_FILES["small"]
    assert find_checkpoint("small") is None
    cache = _touch(user_checkpoint_dir() / name)
    assert find_checkpoint("small") == cache
    local = _touch(clean_env / "work" / "checkpoints" / name)
    assert find_checkpoint("small").resolve() == local.resolve()
    env_dir = _touch(clean_env / "envdir" / name)
    monkeypatch.setenv("NAPARI_SSEG_CHECKPOINT_DIR", str(env_dir.parent))
    assert find_checkpoint("small") == env_dir
    env_file = _touch(clean_env / "elsewhere" / "mine.pt")
    monkeypatch.setenv("NAPARI_SSEG_CHECKPOINT", str(env_file))
    assert find_checkpoint("small") == env_file
    explicit = _touch(clean_env / "explicit" / name)
    assert find_checkpoint("small", explicit) == explicit
    assert find_checkpoint("small", explicit.parent) == explicit  # a folder holding the file
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        find_checkpoint("small", clean_env / "nothere.pt")
    with pytest.raises(ValueError, match="unknown SAM2 model 'huge'"):
        find_checkpoint("huge")


def test_auto_without_checkpoint_is_superpixel_and_says_why(clean_env):
    proposer, desc = resolve_backend("auto", model="tiny")
    assert proposer is None
    assert desc.startswith("superpixel") and "sam2.1_hiera_tiny.pt" in desc
    assert resolve_backend("superpixel")[0] is None


def test_sam2_without_checkpoint_is_a_clear_error(clean_env):
    with pytest.raises(FileNotFoundError, match="download_checkpoints.sh") as err:
        resolve_backend("sam2", model="large")
    assert "sam2.1_hiera_large.pt" in str(err.value)
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("sam3")
    with pytest.raises(ValueError, match="device"):
        resolve_backend("auto", device="tpu")


def test_an_unreadable_search_folder_is_passed_over(clean_env, monkeypatch):
    """Run as a user whose HOME belongs to another (a cluster job, sudo -u): the search goes on
    past a cache folder it may not read instead of failing the auto backend."""
    from pathlib import Path

    found = _touch(clean_env / "work" / "checkpoints" / MODEL_FILES["tiny"])
    real_is_file = Path.is_file
    blocked = user_checkpoint_dir()

    def is_file(self):
        if blocked in self.parents or self == blocked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    monkeypatch.setattr("napari_sseg.backends.checkpoint_search_paths",
                        lambda model: [blocked / MODEL_FILES[model], found])
    assert find_checkpoint("tiny") == found
    monkeypatch.setattr("napari_sseg.backends.checkpoint_search_paths",
                        lambda model: [blocked / MODEL_FILES[model]])
    assert find_checkpoint("tiny") is None
