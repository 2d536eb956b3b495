#!/usr/bin/env bash
# Makes tests/data/models/deepedit_phantom_small.safetensors, the phantom-trained model of the click-response test
# (tests/infer/test_click_response.cpp): 48 phantoms (seed 7), configs/train_small.json on the CPU, the best
# checkpoint. Deterministic for a given thread count (OpenBLAS); the committed file was made with OMP_NUM_THREADS=1.
# Usage: scripts/make_click_model.sh [build-dir]   (default: build)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for p in dex-phantom dex-train; do
  [[ -x "$build/bin/$p" ]] || { echo "make_click_model.sh: $build/bin/$p is missing: build it first" >&2; exit 2; }
done
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
"$build/bin/dex-phantom" --out "$work/phantoms" --count 48 --seed 7 --size small --quiet
"$build/bin/dex-train" --config "$here/configs/train_small.json" --dataset-dir "$work/phantoms" \
  --output-dir "$work/run" --device cpu
mkdir -p "$here/tests/data/models"
cp "$work/run/model.safetensors" "$here/tests/data/models/deepedit_phantom_small.safetensors"
echo "wrote tests/data/models/deepedit_phantom_small.safetensors"
