#!/usr/bin/env bash
# One command for the lent GPU machine (DESIGN.md, KERNELS.md §7): every CUDA test, a memcheck on tiny cases, the conv
# kernel benchmarks against cuDNN / cuBLAS, SASS tensor-core instruction counts per conv kernel, and a PyTorch
# same-card baseline; logs under $OUT, a short markdown table printed last (and in $OUT/summary.md, to commit as
# bench/results/<gpu>-<date>.md). About 4-6 minutes.
#
# Prepare here (no GPU needed):  scripts/gpu-build.sh          -> build-gpu-carry/ (binaries + libraries)
# Run there (device tool):       run(command="bash scripts/gpu-check.sh", carry=["build-gpu-pack"], timeout_s=480)
#                                (build-gpu-pack/carry.tgz is unpacked into build-gpu-carry/ first)
# Files back (at most 8): check.log, tests.log, bench.json, bench2.json, sass.txt, torch.json, model.txt, summary.md.
# Env: OUT (default /tmp/dex-gpu-check), CARRY (default build-gpu-carry), BENCH_FILTER (regex, default all), SKIP_MODEL=1,
#      BENCH_MIN_TIME (seconds, default 0.02), SKIP_TORCH=1, SKIP_SANITIZER=1.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/dex-gpu-check}
CARRY=${CARRY:-build-gpu-carry}
mkdir -p "$OUT"
LOG="$OUT/check.log"
: > "$LOG"
say() { echo "[gpu-check $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

# ---- 0. preconditions: a GPU, the carried binaries ----------------------------------------------------------------
if [ ! -d "$CARRY" ] && [ -f build-gpu-pack/carry.tgz ]; then
  tar -xzf build-gpu-pack/carry.tgz && say "unpacked build-gpu-pack/carry.tgz into $CARRY"
fi
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

# Libraries: carried ones first, then the toolkit, then PyTorch's cuDNN / cuBLAS wheels (the benches dlopen them).
LIBS="$PWD/$CARRY/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do [ -d "$d" ] && LIBS="$LIBS:$d"; done
for pat in 'libcudnn.so.9' 'libcublas.so.13'; do
  f=$(find /opt/torch/.venv /usr/local/lib/python3* /usr/lib/python3 -name "$pat*" 2>/dev/null | head -1)
  [ -n "$f" ] && LIBS="$LIBS:$(dirname "$f")"
done
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
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
say "1/6 tests"
timeout 150 "$CARRY/bin/dex_tests_cuda" --gtest_color=no 2>&1 | tail -n 4000 > "$OUT/tests.log"
test_rc=$?
# The inference plan's fused kernels, the GPU way back and preprocessing live in dex_tests_infer (device rows only).
echo "## dex_tests_infer (GPU rows)" >> "$OUT/tests.log"
timeout 90 "$CARRY/bin/dex_tests_infer" --gtest_color=no \
  --gtest_filter='Fused*:InferencePlan.Cuda*' 2>&1 | tail -n 300 >> "$OUT/tests.log"
infer_rc=$?
[ "$test_rc" = 0 ] && test_rc=$infer_rc
grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/tests.log" | tail -20 | tee -a "$LOG"
if grep -q 'CUDA backend not available' "$OUT/tests.log"; then say "WARNING: GPU rows skipped: backend unavailable"; fi
say "tests exit code $test_rc"

# ---- 2. memcheck on three tiny cases (KERNELS.md §7) -----------------------------------------------------------------
if [ "${SKIP_SANITIZER:-0}" != 1 ] && command -v compute-sanitizer >/dev/null 2>&1; then
  say "2/6 compute-sanitizer memcheck (3 tiny rows)"
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 "$CARRY/bin/dex_tests_cuda" --gtest_color=no \
    --gtest_filter='*conv3d_fprop_f16_v2_N1C64K64D9H7W6k3s222:*conv_transpose3d_fprop_f16_v2_N1C64K32D5H3W7k222:*instance_norm_fwd_f32_table_plain' \
    2>&1 | grep -E 'ERROR SUMMARY|Invalid|PASSED|FAILED' | tail -8 | tee -a "$LOG"
else
  say "2/6 compute-sanitizer skipped"
fi

# ---- 3. benchmarks --------------------------------------------------------------------------------------------------
say "3/6 benchmarks (min_time ${BENCH_MIN_TIME:-0.02} s): A = fprop v2/v3 (wgmma) vs cuDNN/cuBLAS, B = dgrad, wgrad, transposed, 16-bit ops"
# Two runs, two JSON files: if B hits its timeout, A's results (the ones the issue asks for) survive.
bench() {  # bench <json> <timeout> <filter>
  timeout "$2" "$CARRY/bin/dex_bench_cuda" --benchmark_min_time="${BENCH_MIN_TIME:-0.02}" \
    --benchmark_filter="$3" --benchmark_out="$1" --benchmark_out_format=json 2>&1 | grep -E 'ERROR' | head -5 >>"$LOG"
  say "bench $(basename "$1") exit code ${PIPESTATUS[0]}"
}
bench "$OUT/bench.json" 150 "${BENCH_FILTER:-^conv3d_fprop/(f16_v2|f16_wgmma|cudnn_f16|cublas_f16)/}"
[ -z "${BENCH_FILTER:-}" ] && bench "$OUT/bench2.json" 100 '^(conv3d_dgrad|conv3d_wgrad|conv_transpose3d|ops16)'

# ---- 4. SASS: tensor-core and async-copy instructions per kernel ---------------------------------------------------
say "4/6 cuobjdump SASS counts"
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
  cat "$OUT/sass.txt" | tee -a "$LOG" | head -20
else
  say "cuobjdump not found" | tee "$OUT/sass.txt"
fi

# ---- 5. PyTorch same-card baseline ---------------------------------------------------------------------------------
if [ "${SKIP_TORCH:-0}" != 1 ]; then
  say "5/6 PyTorch conv3d baseline (fp16, channels_last_3d, cudnn.benchmark)"
  PYTHONUNBUFFERED=1 timeout 100 python3 bench/cuda/torch_conv_baseline.py --json "$OUT/torch.json" >>"$LOG" 2>&1
  say "torch exit code $?"
else
  say "5/6 PyTorch baseline skipped"
fi

# ---- 6. whole model: the inference plan (fp32, fp16 unfused, fp16 fused), dex-bench, PyTorch on the same card ------
if [ "${SKIP_MODEL:-0}" != 1 ] && [ -x "$CARRY/bin/dex-bench" ]; then
  say "6/6 whole model: dex-plan-bench, PyTorch eager/AMP/channels-last, dex-bench (model, end to end, one click)"
  {
    echo "## dex-plan-bench --device cuda --table (fp32 plan, fp16 unfused, fp16 fused; graph replays, median)"
    timeout 60 "$CARRY/bin/dex-plan-bench" --device cuda --table --runs 20 2>&1 | tail -30
    echo "## bench/torch_gpu_baseline.py"
    PYTHONUNBUFFERED=1 timeout 60 python3 bench/torch_gpu_baseline.py --json "$OUT/torch_model.json" 2>&1 | tail -30
    echo "## dex-bench --device cuda"
    torch_arg=(); [ -s "$OUT/torch_model.json" ] && torch_arg=(--torch "$OUT/torch_model.json")
    timeout 150 "$CARRY/bin/dex-bench" --device cuda --runs 50 --e2e-runs 3 --image "$CARRY/data/case_a.nii.gz" \
      "${torch_arg[@]}" --out "$OUT/dexbench.json.tmp" 2>&1 | tail -40
    echo "## dex-bench JSON"; cat "$OUT/dexbench.json.tmp" 2>/dev/null
    echo "## PyTorch JSON"; cat "$OUT/torch_model.json" 2>/dev/null
    rm -f "$OUT/dexbench.json.tmp" "$OUT/torch_model.json"
  } > "$OUT/model.txt" 2>&1
  grep -E 'PASSED|FAILED|floor|model|end to end|click' "$OUT/model.txt" | head -30 | tee -a "$LOG"
else
  say "6/6 whole model skipped"
fi

# ---- summary (last) -------------------------------------------------------------------------------------------------
python3 bench/cuda/gpu_summary.py "$OUT/tests.log" "$OUT/sass.txt" "$OUT/torch.json" "$OUT"/bench*.json \
  > "$OUT/summary.md" 2>&1
say "done; summary follows (also $OUT/summary.md; commit it as bench/results/$GPU-$(date +%Y-%m-%d).md)"
cat "$OUT/summary.md"
[ "$test_rc" = 0 ]
