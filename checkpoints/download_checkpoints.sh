#!/usr/bin/env bash
# Download the SAM2.1 checkpoints used by napari-sseg from Meta's public file host.
#
#   bash checkpoints/download_checkpoints.sh            # tiny only (the default model)
#   bash checkpoints/download_checkpoints.sh all        # tiny, small, base_plus, large
#   bash checkpoints/download_checkpoints.sh small large
#   DEST=~/.cache/napari-sseg/checkpoints bash checkpoints/download_checkpoints.sh all
#
# Files go to $DEST (default: the folder of this script). Each download goes to a temporary
# file first and is renamed only when complete, so an interrupted download never leaves a
# truncated checkpoint under the real name. Checks, for every file:
#   * size: the byte count announced by the server (Content-Length) must be received, and the
#     file must be at least 97% of (parameters x 4 bytes), which a truncated file is not;
#   * SHA-256: Meta does not publish digests for these files. If you have one, put it in
#     $DEST/SHA256SUMS (lines "<sha256>  <file name>", as written by sha256sum) and it is
#     checked; otherwise the digest of the downloaded file is written there, so later copies
#     (other machines, re-downloads) are checked against it.
set -euo pipefail

BASE_URL="${SAM2_BASE_URL:-https://dl.fbaipublicfiles.com/segment_anything_2/092824}"
DEST="${DEST:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
mkdir -p "$DEST"

declare -A FILES=(
  [tiny]=sam2.1_hiera_tiny.pt
  [small]=sam2.1_hiera_small.pt
  [base_plus]=sam2.1_hiera_base_plus.pt
  [large]=sam2.1_hiera_large.pt
)
# parameters in millions (SAM2 model card); a float32 checkpoint holds about 4 bytes each
declare -A PARAMS_M=([tiny]=38.9 [small]=46.0 [base_plus]=80.8 [large]=224.4)

if [[ $# -eq 0 ]]; then
  models=(tiny)
elif [[ "$1" == "all" ]]; then
  models=(tiny small base_plus large)
else
  models=("$@")
fi

if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fL --retry 3 -o "$2" "$1"; }
  remote_size() { curl -fsIL "$1" | tr -d '\r' | awk 'tolower($1)=="content-length:"{n=$2} END{print n}'; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -O "$2" "$1"; }
  remote_size() { wget --spider -S "$1" 2>&1 | tr -d '\r' | awk 'tolower($1)=="content-length:"{n=$2} END{print n}'; }
else
  echo "error: need curl or wget to download" >&2
  exit 1
fi

if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | awk '{print $1}'; }
else
  sha256() { shasum -a 256 "$1" | awk '{print $1}'; }
fi

file_size() { wc -c < "$1" | tr -d ' '; }
SUMS="$DEST/SHA256SUMS"
touch "$SUMS"

for model in "${models[@]}"; do
  file="${FILES[$model]:-}"
  if [[ -z "$file" ]]; then
    echo "error: unknown model '$model' (choose tiny, small, base_plus, large or all)" >&2
    exit 2
  fi
  target="$DEST/$file"
  min_bytes=$(awk -v p="${PARAMS_M[$model]}" 'BEGIN{printf "%d", p*1e6*4*0.97}')
  if [[ -f "$target" && $(file_size "$target") -ge $min_bytes ]]; then
    echo "$file: already present ($(file_size "$target") bytes); checking"
  else
    url="$BASE_URL/$file"
    expected=$(remote_size "$url" || true)
    tmp="$target.part.$$"
    trap 'rm -f "$tmp"' EXIT
    echo "downloading $url -> $target"
    fetch "$url" "$tmp"
    got=$(file_size "$tmp")
    if [[ -n "$expected" && "$got" != "$expected" ]]; then
      echo "error: $file: received $got bytes, the server announced $expected; try again" >&2
      rm -f "$tmp"; exit 3
    fi
    if [[ $got -lt $min_bytes ]]; then
      echo "error: $url gave only $got bytes (a complete $file has at least $min_bytes); try again" >&2
      rm -f "$tmp"; exit 3
    fi
    mv -f "$tmp" "$target"
    trap - EXIT
  fi
  size=$(file_size "$target")
  if [[ $size -lt $min_bytes ]]; then
    echo "error: $target is truncated ($size bytes < $min_bytes expected); delete it and rerun" >&2
    exit 3
  fi
  digest=$(sha256 "$target")
  known=$(awk -v f="$file" '$2==f || $2=="*"f {print $1}' "$SUMS" | head -n1)
  if [[ -n "$known" ]]; then
    if [[ "$known" != "$digest" ]]; then
      echo "error: $target: SHA-256 $digest does not match $known in $SUMS; delete it and rerun" >&2
      exit 4
    fi
    echo "$file: OK ($size bytes, SHA-256 matches $SUMS)"
  else
    echo "$digest  $file" >> "$SUMS"
    echo "$file: OK ($size bytes); SHA-256 $digest recorded in $SUMS"
  fi
done

echo "done. napari-sseg finds checkpoints in $DEST when it is checkpoints/ of the current"
echo "folder or of the source checkout, ~/.cache/napari-sseg/checkpoints, or via"
echo "NAPARI_SSEG_CHECKPOINT_DIR=$DEST / --checkpoint PATH."
