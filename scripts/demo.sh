#!/usr/bin/env bash
# dex's main job on a built-in default, end to end on this machine (CPU; the full config when a GPU is present):
#   1. build dex (Release)            2. generate a phantom dataset (MSD layout)
#   3. train the small DeepEdit config with simulated clicks, progress shown (a few minutes)
#   4. evaluate Dice against the number of clicks on the validation split
#   5. segment the real CT (../shared/data/real-ct) automatically and with clicks, with previews and timings
#   6. print a short summary.  Everything lands in demo/ (or $1).
# Usage: scripts/demo.sh [out-dir]   env: DEX_DEMO_EPOCHS (default: configs/train_small.json's on a CPU, 30 on a
#        GPU), JOBS
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$here/demo}" && cd "${1:-$here/demo}" && pwd)"
build="${DEX_BUILD:-$here/build}"
jobs="${JOBS:-$(nproc)}"
shared="$here/../shared"
real="$shared/data/real-ct/imagesTr/case_a.nii.gz"
[[ -f "$real" ]] || real="$here/tests/data/real-ct/case_a.nii.gz"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/6 build (Release)"
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
# An existing build folder keeps its DEX_CUDA (a CPU-only folder is not switched to CUDA because nvcc is installed);
# DEX_CUDA=ON|OFF|AUTO in the environment overrides it, a new folder gets AUTO.
cuda=()
if [[ -n "${DEX_CUDA:-}" ]]; then cuda=(-DDEX_CUDA="$DEX_CUDA")
elif [[ ! -f "$build/CMakeCache.txt" ]]; then cuda=(-DDEX_CUDA=AUTO); fi
cmake -S "$here" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${cuda[@]}" >/dev/null
cmake --build "$build" -j "$jobs" --target dex-phantom dex-train dex-eval dex-infer

PHANTOM="$build/bin/dex-phantom"; TRAIN="$build/bin/dex-train"; EVAL="$build/bin/dex-eval"; INFER="$build/bin/dex-infer"

say "2/6 phantom dataset -> $out/phantoms"
if [[ ! -f "$out/phantoms/dataset.json" ]]; then
  "$PHANTOM" --out "$out/phantoms" --count 24 --test-count 2 --seed 7 --size small
fi

config="$here/configs/train_small.json"
device=cpu
built_cuda="$(sed -n 's/^DEX_CUDA:STRING=//p' "$build/CMakeCache.txt")"
precision=fp32
epochs="${DEX_DEMO_EPOCHS:-}"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && [[ "$built_cuda" != OFF ]]; then
  # The bundle's network and 128^3 grid with AMP; its 500 epochs would take hours: 30 (~5 s each on an H100,
  # measured 5.2 volumes/s) keep the demo to a few minutes. Inference runs the fused fp16 path.
  config="$here/configs/train.json"; device=cuda; precision=fp16; epochs="${epochs:-30}"
fi
say "3/6 train ($(basename "$config"), $device${epochs:+, $epochs epochs}) -> $out/run"
extra=()
[[ -n "$epochs" ]] && extra+=(--max-epochs "$epochs")
"$TRAIN" --config "$config" --dataset-dir "$out/phantoms" --output-dir "$out/run" --device "$device" "${extra[@]}"

model="$out/run/model.safetensors"
say "4/6 evaluate Dice vs clicks -> $out/eval"
mkdir -p "$out/eval"
# The validation split is the config's num_val last cases (dex-eval's own default is the bundle's 9).
num_val="$(sed -n 's/^ *"num_val": *\([0-9]*\).*/\1/p' "$out/run/config.json")"
"$EVAL" --model "$model" --dataset-dir "$out/phantoms" --output-dir "$out/eval" --device "$device" \
  ${num_val:+--num-val "$num_val"} | tee "$out/eval/table.txt"

say "5/6 segment the real CT: automatic and with clicks -> $out/real"
mkdir -p "$out/real"
"$INFER" --model "$model" --image "$real" --out "$out/real/auto.nii.gz" --preview "$out/real/auto.png" \
  --probabilities "$out/real/auto_prob.nii.gz" --device "$device" --precision "$precision" --timing
"$INFER" --model "$model" --image "$real" --out "$out/real/clicks.nii.gz" --preview "$out/real/clicks.png" \
  --click spleen:20,40,95 --click background:60,60,60 --device "$device" --precision "$precision" --timing
# Its mask (a pseudo-label) gives the Dice of the same model on real anatomy, with dex-eval's simulated clicks.
if [[ -f "$shared/data/real-ct/dataset.json" ]]; then
  mkdir -p "$out/real/eval"
  "$EVAL" --model "$model" --dataset-dir "$shared/data/real-ct" --all-cases --output-dir "$out/real/eval" \
    --device "$device" | tee "$out/real/eval/table.txt"
fi

say "6/6 summary"
python_free_summary() {
  echo "outputs in $out:"
  echo "  training curve   run/curve.png, metrics run/metrics.jsonl, best model $model"
  echo "  Dice vs clicks   eval/eval.csv (+ eval.json, dice_vs_clicks.png)"
  echo "  real CT          real/auto.nii.gz (+ auto.png), real/clicks.nii.gz (+ clicks.png)"
  echo "  real CT Dice     real/eval/eval.csv (dex-eval against its pseudo-label mask)"
  [[ -f "$out/eval/table.txt" ]] && { echo; echo "phantom validation cases, mean Dice by clicks:"; cat "$out/eval/table.txt"; }
  [[ -f "$out/real/eval/table.txt" ]] && {
    echo; echo "real CT (a phantom-trained model on real anatomy: expect little without clicks), Dice by clicks:"
    cat "$out/real/eval/table.txt"; }
  for t in auto clicks; do
    [[ -f "$out/real/$t.timing.json" ]] && { echo; echo "real CT, $t mode, times (ms):"; cat "$out/real/$t.timing.json"; }
  done
}
python_free_summary | tee "$out/summary.txt"
