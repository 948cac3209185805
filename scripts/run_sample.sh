#!/usr/bin/env bash
# Install what is needed (scripts/setup_env.sh, reused when complete), then run the main job on
# the bundled CC0 sample: 30 class points on an aerial tile of Dubai -> dense class mask.
# Outputs land in out/sample/: dubai_tile2_part005.png (class indices),
# dubai_tile2_part005_overlay.png and run.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
sample=src/napari_sseg/sample_data
exec .venv/bin/napari-sseg expand "$sample/dubai_tile2_part005.jpg" \
  --points "$sample/dubai_points.csv" --classes "$sample/classes.csv" \
  --out out/sample --overwrite "$@"
