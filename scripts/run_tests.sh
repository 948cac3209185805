#!/usr/bin/env bash
# Install what is needed (scripts/setup_env.sh, reused when complete), then run the whole test
# suite. pytest-xvfb starts a virtual X server for the napari tests (napari needs OpenGL, which
# Qt's offscreen platform lacks). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
