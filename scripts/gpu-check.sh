#!/usr/bin/env bash
# One command for the lent GPU machine (DESIGN.md, KERNELS.md §7): every CUDA test, a memcheck on tiny cases, the conv
# kernel benchmarks against cuDNN / cuBLAS, SASS tensor-core instruction counts per conv kernel, and a PyTorch
# same-card baseline; logs under $OUT, a short markdown table printed last (and in $OUT/summary.md, to commit as
# bench/results/<gpu>-<date>.md). Stages run in order of value (tests, whole model, training step, conv kernels, PyTorch
# conv baseline, SASS, sanitizer) inside one time budget (BUDGET seconds, default 330): each stage's timeout is capped
# by what is left, and a stage with too little left is skipped and says so, so the call ends well inside its limit.
#
# Prepare here (no GPU needed):  scripts/gpu-build.sh          -> build-gpu-carry/ (binaries + libraries)
# Run there (device tool):       run(command="bash scripts/gpu-check.sh", carry=["build-gpu-pack"], timeout_s=480)
#                                (build-gpu-pack/carry.tgz is unpacked into build-gpu-carry/ first)
# Files back (at most 8): check.log, tests.log, bench.json, bench2.json, sass.txt, torch.json, model.txt, summary.md.
# Env: OUT (default /tmp/dex-gpu-check), CARRY (default build-gpu-carry), BUDGET (seconds, default 330),
#      BENCH_FILTER (regex for the fprop rows, default the 128^3 f16 rows), BENCH_MIN_TIME (seconds, default 0.02),
#      SKIP_MODEL=1 (SKIP_TORCH_MODEL=1: no PyTorch model rows; MODEL_RUNS, default 20 / 30), SKIP_TRAIN=1,
#      SKIP_BENCH=1, SKIP_TORCH=1, SKIP_SANITIZER=1, SKIP_TESTS=1, TEST_FILTER (gtest filter for dex_tests_cuda).
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-lib.sh
gpu_init gpu-check check.log 330

# ---- 0. preconditions: a GPU, the carried binaries ----------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >>"$LOG" 2>&1; then
  say "FAIL: no NVIDIA GPU here (nvidia-smi missing or found no device). This script is for the lent GPU machine;"
  say "      on a development machine run scripts/gpu-build.sh and the CPU test suite instead."
  exit 2
fi
if [ ! -x "$CARRY/bin/dex_tests_cuda" ] || [ ! -x "$CARRY/bin/dex_bench_cuda" ]; then
  say "FAIL: $CARRY/bin/dex_tests_cuda or dex_bench_cuda missing: run scripts/gpu-build.sh here and carry $CARRY"
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >>"$LOG" 2>&1
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
say "GPU: $GPU; nvcc: $(nvcc --version 2>/dev/null | tail -1)"

say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
if ldd "$CARRY/bin/dex_tests_cuda" | grep -q 'not found'; then
  say "FAIL: missing libraries: $(ldd "$CARRY/bin/dex_tests_cuda" | grep 'not found' | tr '\n' ' ')"
  say "      (if glibc/libstdc++ are too old there, rebuild on the machine: cmake/ninja/nvcc are installed)"
  exit 3
fi

if ! "$CARRY/bin/dex_tests_cuda" --gtest_list_tests >/dev/null 2>>"$LOG"; then
  say "FAIL: the carried test binary does not start here (see check.log: glibc / libstdc++ versions?);"
  say "      rebuild on this machine instead: cmake -S . -B build -G Ninja -DDEX_CUDA=ON needs the Debian libraries"
  exit 3
fi

# ---- 1. tests -------------------------------------------------------------------------------------------------------
test_rc=1
if [ "${SKIP_TESTS:-0}" = 1 ]; then say "1/8 dex_tests_cuda skipped (SKIP_TESTS=1)"; test_rc=0
elif stage 110 "1/8 tests: dex_tests_cuda"; then
  # Straight to the file (a killed run keeps what it printed); the tail keeps failures' details within the limits.
  timeout "$T" "$CARRY/bin/dex_tests_cuda" --gtest_color=no ${TEST_FILTER:+--gtest_filter="$TEST_FILTER"} \
    > "$OUT/tests.full" 2>&1
  test_rc=$?
  [ "$test_rc" = 124 ] && say "dex_tests_cuda hit its timeout"
  { grep -E '^\[  FAILED  \]|Failure|error|Expected|Which is|actual|CUDA' "$OUT/tests.full" | head -400
    echo "## dex_tests_cuda (last 1500 lines)"; tail -n 1500 "$OUT/tests.full"; } > "$OUT/tests.log"
  rm -f "$OUT/tests.full"
fi
# The inference plan's fused kernels, the GPU way back and preprocessing live in dex_tests_infer (device rows only).
if stage 50 "2/8 tests: dex_tests_infer GPU rows"; then
  echo "## dex_tests_infer (GPU rows)" >> "$OUT/tests.log"
  timeout "$T" "$CARRY/bin/dex_tests_infer" --gtest_color=no \
    --gtest_filter='Fused*:InferencePlan.Cuda*:*Cuda*:*CUDA*:*Gpu*:*GPU*' > /tmp/infer.log 2>&1
  infer_rc=$?
  { grep -E '^\[  FAILED  \]|Failure|Expected|Which is' /tmp/infer.log | head -100; tail -n 300 /tmp/infer.log; } >> "$OUT/tests.log"
  [ "$test_rc" = 0 ] && test_rc=$infer_rc
fi
grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/tests.log" | tail -20 | tee -a "$LOG"
if grep -q 'CUDA backend not available' "$OUT/tests.log"; then say "WARNING: GPU rows skipped: backend unavailable"; fi
say "tests exit code $test_rc"

# ---- 3. training (model.txt holds this stage and the next)
: > "$OUT/model.txt"
# steps at 128^3 with AMP (the bundle's configs/train.json) on phantoms
if [ "${SKIP_TRAIN:-0}" != 1 ] && [ -x "$CARRY/bin/dex-train" ] && stage 110 "3/8 training step at 128^3, AMP"; then
  {
    echo "## dex-train --config configs/train.json --device cuda (phantoms, 2 epochs of 11 steps, 1 validation case)"
    rm -rf /tmp/ph /tmp/run
    timeout 20 "$CARRY/bin/dex-phantom" --out /tmp/ph --count 12 --test-count 0 --seed 7 --size small --quiet
    timeout "$(limit 60)" "$CARRY/bin/dex-train" --config configs/train.json --dataset-dir /tmp/ph --output-dir /tmp/run \
      --device cuda --max-epochs 2 --num-val 1 --num-workers 8 --progress false 2>&1 | tail -40
    echo "## metrics.jsonl"; cat /tmp/run/metrics.jsonl 2>/dev/null
    # Batch 2, the batch of NVIDIA's nnU-Net figure (6.7 volumes/s on an A100, AMP): one epoch of 6 steps.
    echo "## dex-train ... --batch-size 2 --max-epochs 1"
    timeout "$(limit 45)" "$CARRY/bin/dex-train" --config configs/train.json --dataset-dir /tmp/ph --output-dir /tmp/run2 \
      --device cuda --max-epochs 1 --num-val 1 --num-workers 8 --progress false --batch-size 2 2>&1 | tail -5
  } >> "$OUT/model.txt" 2>&1
  grep -E 'epoch|vol/s|volumes|error' "$OUT/model.txt" | tail -8 | tee -a "$LOG"
fi

# ---- 4. whole model: the inference plan (fp32, fp16 unfused, fp16 fused), PyTorch on the same card, dex-bench -------
if [ "${SKIP_MODEL:-0}" != 1 ] && [ -x "$CARRY/bin/dex-bench" ] && stage 150 "4/8 whole model"; then
  {
    echo "## dex-plan-bench --device cuda --table (fp32 plan, fp16 unfused, fp16 fused; graph replays, median)"
    timeout "$(limit 45)" "$CARRY/bin/dex-plan-bench" --device cuda --table --runs "${MODEL_RUNS:-20}" 2>&1 | tail -30
    echo "## bench/torch_gpu_baseline.py"
    [ "${SKIP_TORCH_MODEL:-0}" = 1 ] ||
      PYTHONUNBUFFERED=1 timeout "$(limit 50)" python3 bench/torch_gpu_baseline.py --json /tmp/torch_model.json 2>&1 | tail -30
    # fp16 first (model, end to end, one click: the fast path), then the fp32 model row alone (~1.2 s a forward).
    echo "## dex-bench --device cuda --precision fp16"
    torch_arg=(); [ -s /tmp/torch_model.json ] && torch_arg=(--torch /tmp/torch_model.json)
    timeout "$(limit 60)" "$CARRY/bin/dex-bench" --device cuda --precision fp16 --runs "${MODEL_RUNS:-30}" --e2e-runs 3 \
      --image "$CARRY/data/case_a.nii.gz" "${torch_arg[@]}" --out /tmp/dexbench.json 2>&1 | tail -40
    echo "## dex-bench --device cuda --precision fp32 --what model"
    timeout "$(limit 25)" "$CARRY/bin/dex-bench" --device cuda --precision fp32 --what model --runs 3 --warmup 1 \
      --out /tmp/dexbench32.json 2>&1 | tail -12
    # The tiled fp32 conv (conv3d_f32_tiled.cu, opt-in): the fp32 plan's GPU tests and its model row with it.
    echo "## DEX_F32_CONV=tiled dex_tests_infer (InferencePlan.Cuda*: the fp32 plan rows use it, the fp16 row does not),"
    echo "## then dex-bench --precision fp32 --what model"
    DEX_F32_CONV=tiled timeout "$(limit 40)" "$CARRY/bin/dex_tests_infer" --gtest_color=no \
      --gtest_filter='InferencePlan.Cuda*' 2>&1 | grep -E '^\[  (PASSED|FAILED|SKIPPED)|Failure' | head -20
    DEX_F32_CONV=tiled timeout "$(limit 20)" "$CARRY/bin/dex-bench" --device cuda --precision fp32 --what model \
      --runs 5 --warmup 1 --out /tmp/dexbench32t.json 2>&1 | tail -6
    echo "## dex-bench JSON"; cat /tmp/dexbench.json /tmp/dexbench32.json /tmp/dexbench32t.json 2>/dev/null
    echo "## PyTorch JSON"; cat /tmp/torch_model.json 2>/dev/null
  } >> "$OUT/model.txt" 2>&1
  grep -E 'PASSED|FAILED|floor|model|end to end|click' "$OUT/model.txt" | head -30 | tee -a "$LOG"
fi

# ---- 5. conv benchmarks ---------------------------------------------------------------------------------------------
# Two runs, two JSON files: if B hits its timeout, A's results (the ones the issue asks for) survive.
bench() {  # bench <json> <timeout> <filter>
  timeout "$2" "$CARRY/bin/dex_bench_cuda" --benchmark_min_time="${BENCH_MIN_TIME:-0.02}" \
    --benchmark_filter="$3" --benchmark_out="$1" --benchmark_out_format=json 2>&1 | awk '/ERROR/ && n++ < 5' >>"$LOG"
  say "bench $(basename "$1") exit code ${PIPESTATUS[0]}"
}
if [ "${SKIP_BENCH:-0}" = 1 ]; then say "5/8, 6/8 conv benchmarks skipped (SKIP_BENCH=1)"
elif stage 70 "5/8 fprop benchmarks: v2 / wgmma vs cuDNN / cuBLAS"; then
  bench "$OUT/bench.json" "$T" "${BENCH_FILTER:-^conv3d_fprop/(f16_v2|f16_wgmma|cudnn_f16|cublas_f16|f32_tiled|f32_v1)/128/}"
fi
if [ "${SKIP_BENCH:-0}" != 1 ] && stage 45 "6/8 benchmarks B: dgrad, wgrad, transposed, 16-bit ops"; then
  bench "$OUT/bench2.json" "$T" '^(conv3d_dgrad|conv3d_wgrad|conv_transpose3d)/[^/]*/128/|^ops16'
fi

# ---- 7. PyTorch same-card conv baseline -----------------------------------------------------------------------------
if [ "${SKIP_TORCH:-0}" != 1 ] && stage 45 "7/8 PyTorch conv3d baseline (fp16, channels_last_3d, cudnn.benchmark)"; then
  PYTHONUNBUFFERED=1 timeout "$T" python3 bench/cuda/torch_conv_baseline.py --json "$OUT/torch.json" >>"$LOG" 2>&1
  say "torch exit code $?"
fi

# ---- 8. SASS: tensor-core and async-copy instructions per kernel; memcheck on three tiny cases -----------------------
say "8/8 cuobjdump SASS counts"
if command -v cuobjdump >/dev/null 2>&1; then
  { cuobjdump --dump-sass "$CARRY/bin/dex_bench_cuda"; cuobjdump --dump-sass "$CARRY/bin/dex-plan-bench"; } 2>/dev/null | awk '
    /Function :/ { if (fn != "") printf "%-70s HMMA %4d HGMMA %4d LDSM %4d LDGSTS %4d LDL/STL %3d\n", fn, h, g, l, a, s;
                   fn = $3; h = g = l = a = s = 0; next }
    /HMMA/ { h++ } /HGMMA/ { g++ } /LDSM/ { l++ } /LDGSTS/ { a++ } /LDL|STL/ { s++ }
    END { if (fn != "") printf "%-70s HMMA %4d HGMMA %4d LDSM %4d LDGSTS %4d LDL/STL %3d\n", fn, h, g, l, a, s }' |
    grep -E 'conv|fused' > "$OUT/sass.raw"
  # Demangle (cu++filt ships with the toolkit) and shorten the names.
  { command -v cu++filt >/dev/null && cu++filt < "$OUT/sass.raw" || cat "$OUT/sass.raw"; } |
    sed -e 's/dex::(anonymous namespace):://; s/(dex::ConvArgs,[^)]*)//' > "$OUT/sass.txt"
  rm -f "$OUT/sass.raw"
  # The cubins inside (one H100 run listed no v3 / wgmma function above: is its sm_90a cubin there?).
  { echo "## cuobjdump --list-elf dex_bench_cuda"; cuobjdump --list-elf "$CARRY/bin/dex_bench_cuda" 2>&1 | head -20
    echo "## functions with HGMMA"; cuobjdump --dump-sass "$CARRY/bin/dex_bench_cuda" 2>/dev/null |
      awk '/Function :/ { fn = $3 } /HGMMA/ { n[fn]++ } END { for (f in n) print n[f], f }' | head -20; } >> "$OUT/sass.txt"
  head -20 "$OUT/sass.txt" | tee -a "$LOG"
else
  say "cuobjdump not found" | tee "$OUT/sass.txt"
fi
if [ "${SKIP_SANITIZER:-0}" != 1 ] && command -v compute-sanitizer >/dev/null 2>&1 && stage 60 "compute-sanitizer memcheck (3 tiny rows)"; then
  timeout "$T" compute-sanitizer --tool memcheck --error-exitcode 9 "$CARRY/bin/dex_tests_cuda" --gtest_color=no \
    --gtest_filter='*conv3d_fprop_f16_v2_N1C64K64D9H7W6k3s222:*conv_transpose3d_fprop_f16_v2_N1C64K32D5H3W7k222:*instance_norm_fwd_f32_table_plain' \
    2>&1 | grep -E 'ERROR SUMMARY|Invalid|PASSED|FAILED' | tail -8 | tee -a "$LOG"
fi

# ---- summary (last) -------------------------------------------------------------------------------------------------
DEX_GPU_NAME="$GPU" python3 bench/cuda/gpu_summary.py "$OUT/tests.log" "$OUT/sass.txt" "$OUT/torch.json" "$OUT"/bench*.json \
  > "$OUT/summary.md" 2>&1
say "done; summary follows (also $OUT/summary.md; commit it as bench/results/$GPU-$(date +%Y-%m-%d).md)"
cat "$OUT/summary.md"
[ "$test_rc" = 0 ]
