#!/usr/bin/env bash
# Builds dex (CUDA backend too when nvcc is present: GPU tests then skip with the reason where there is no
# device) and runs every test with ctest. Usage: scripts/test.sh [build-dir]   (env: DEX_CUDA=AUTO|ON|OFF, JOBS)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
jobs="${JOBS:-$(nproc)}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
t0=$(date +%s)
cmake -S "$here" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DDEX_CUDA="${DEX_CUDA:-AUTO}" >/dev/null
cmake --build "$build" -j "$jobs"
t1=$(date +%s)
echo "[test] build took $((t1 - t0)) s"
cd "$build"
# OpenMP threads spin while they wait by default: with ctest running tests side by side on a small machine that
# burns most cycles in libgomp. Passive waiting keeps the suite fast; it changes no result.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
ctest --output-on-failure -j "$jobs" --timeout 900
echo "[test] build + tests took $(( $(date +%s) - t0 )) s"
