#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with everything the
# sample run and the test suite need: torch (from the machine's local wheels), sam2,
# napari with PyQt6, the test tools, and napari-sseg itself in editable mode.
# Idempotent: a complete environment (marked by .venv/.complete-<hash>) is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NAPARI_SSEG_VENV:-.venv}
stamp="$VENV/.complete-$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  exit 0
fi
if ! command -v xvfb-run >/dev/null 2>&1; then
  # napari's canvas needs OpenGL; Xvfb with Mesa provides it without a screen.
  (apt-get update -qq && apt-get install -y -qq xvfb xauth libxcb-icccm4 libxcb-keysyms1 \
     libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0 libxcb-xinerama0 libxcb-cursor0 \
     libgl1 libegl1 >/dev/null) || echo "warning: could not install Xvfb; GUI tests will be skipped" >&2
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# torch first, pinned to the releases that lie on this machine's disk (see docs).
$PIP install "torch==2.14.1" "torchvision==0.29.1"
$PIP install "setuptools>=61" wheel
# sam2's sdist compiles an optional CUDA extension; skip it and reuse the installed torch.
SAM2_BUILD_CUDA=0 $PIP install --no-build-isolation "sam2==1.1.0"
$PIP install -e ".[all,testing]"
rm -f "$VENV"/.complete-*
touch "$stamp"
