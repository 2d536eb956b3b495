#!/usr/bin/env bash
# Diagnosis run for the lent GPU machine (after scripts/gpu-build.sh here; carry build-gpu-pack): why the fp32 CUDA
# plan disagrees with the CPU plan (graph vs no graph, DEX_SYNC_CHECK, compute-sanitizer initcheck / memcheck), the
# fp16 plan timings (fused and unfused), and where a 128^3 AMP training step spends its GPU time (ncu, one metric:
# gpu__time_duration per kernel, summed by kernel name). Writes diag.log, ncu.csv and plans.txt under $OUT.
# Env: OUT, CARRY (default build-gpu-carry), BUDGET (seconds, default 200).
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-lib.sh
gpu_init gpu-diag diag.log 200
export PATH="$PATH:$(ls -d /opt/nvidia/nsight-compute/* 2>/dev/null | tail -1)"
say "tools: $(command -v compute-sanitizer || echo no compute-sanitizer), $(command -v ncu || echo no ncu)"
T=InferencePlan.CudaGraphPlanMatchesCpuPlan
gt() { "$CARRY/bin/dex_tests_infer" --gtest_color=no --gtest_filter="$T" 2>&1 | grep -E 'cuda plan|OK|FAILED  \]|SKIPPED|PASSED|Which is|exception' | head -8; }
say "1 $T, graph (as shipped)";              timeout "$(limit 20)" bash -c "$(declare -f gt); T=$T CARRY=$CARRY gt" | tee -a "$LOG"
say "2 $T, DEX_PLAN_GRAPH=0 (steps launched one by one)"
DEX_PLAN_GRAPH=0 timeout "$(limit 20)" bash -c "$(declare -f gt); T=$T CARRY=$CARRY gt" | tee -a "$LOG"
say "3 $T, DEX_SYNC_CHECK=1"
DEX_SYNC_CHECK=1 timeout "$(limit 20)" bash -c "$(declare -f gt); T=$T CARRY=$CARRY gt" | tee -a "$LOG"
say "4 compute-sanitizer initcheck, no graph"
DEX_PLAN_GRAPH=0 timeout "$(limit 50)" compute-sanitizer --tool initcheck --show-backtrace device --print-limit 12 \
  "$CARRY/bin/dex_tests_infer" --gtest_filter="$T" 2>&1 | grep -vE '^\[ RUN|^\[----' | head -60 | tee -a "$LOG"
say "5 compute-sanitizer memcheck, no graph"
DEX_PLAN_GRAPH=0 timeout "$(limit 40)" compute-sanitizer --tool memcheck --print-limit 12 \
  "$CARRY/bin/dex_tests_infer" --gtest_filter="$T" 2>&1 | grep -vE '^\[ RUN|^\[----' | head -40 | tee -a "$LOG"
say "6 fp16 plans at 128^3: fused, unfused (graph replays)"
{ timeout "$(limit 25)" "$CARRY/bin/dex-plan-bench" --device cuda --precision f16 --runs 20 2>&1 | tail -12
  timeout "$(limit 25)" "$CARRY/bin/dex-plan-bench" --device cuda --precision f16 --unfused --runs 20 2>&1 | tail -12
} > "$OUT/plans.txt"; cat "$OUT/plans.txt" | tee -a "$LOG"
say "7 ncu: GPU time per kernel over training steps at 128^3 (AMP, batch 1)"
rm -rf /tmp/ph /tmp/run
"$CARRY/bin/dex-phantom" --out /tmp/ph --count 6 --test-count 0 --seed 7 --size small --quiet
timeout "$(limit 100)" ncu --metrics gpu__time_duration.sum --launch-skip 3000 --launch-count 1500 --csv \
  --print-summary per-kernel --cache-control none --clock-control none \
  "$CARRY/bin/dex-train" --config configs/train.json --dataset-dir /tmp/ph --output-dir /tmp/run --device cuda \
  --max-epochs 1 --num-val 1 --progress false > "$OUT/ncu.csv" 2>&1
say "ncu exit $? ($(wc -l < "$OUT/ncu.csv") lines)"
python3 - "$OUT/ncu.csv" <<'PY' | tee -a "$LOG"
import csv, sys, io
rows = [l for l in open(sys.argv[1]) if l.startswith('"')]
r = list(csv.reader(io.StringIO("".join(rows))))
if not r: print("no ncu rows"); sys.exit()
h = r[0]; print("columns:", h[:12])
PY
tail -5 "$OUT/ncu.csv" | cut -c1-300 | tee -a "$LOG"
say "done"
