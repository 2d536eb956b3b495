#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, everything scripts/gpu-check.sh runs on the lent GPU machine, and gathers it in
# build-gpu-carry/ (ignored by git via /build*/) for the device tool's `carry`:
#   build-gpu-carry/bin/dex_tests_cuda, dex_bench_cuda   CUDA test + bench binaries (Release, sm_90 / sm_90a)
#   build-gpu-carry/bin/dex_tests_infer, dex-bench,      the inference plan's CUDA tests, whole-model timings
#                     dex-plan-bench                     (fp32 / fp16 unfused / fp16 fused plans)
#   build-gpu-carry/bin/dex-train, dex-phantom           training throughput at 128^3 with AMP on phantoms
#   build-gpu-carry/data/case_a.nii.gz                   the real CT (end-to-end rows)
#   build-gpu-carry/lib/*.so*                             the shared libraries they need that the GPU image lacks
#   build-gpu-carry/ptxas-*.txt                           ptxas resource usage (registers, smem, spills) per kernel
# The GPU machine has the CUDA 13 toolkit, its driver and PyTorch (with cuDNN / cuBLAS wheels), but no Debian
# libraries: OpenBLAS, gfortran, Google Benchmark, OpenMPI etc. travel here (NCCL, 190 MiB, does not: PyTorch has one there). glibc / libstdc++ there are newer than here
# (Debian 12 builds run on Ubuntu 24.04), so they stay behind. The carry must stay under 64 MiB with the tree.
# Usage: scripts/gpu-build.sh [build-dir]   (default build-cuda; configured with -DDEX_CUDA=ON if new)
# Then, in a session with a GPU:  run(command="bash scripts/gpu-check.sh", carry=["build-gpu-pack"], timeout_s=480)
# (build-gpu-pack/carry.tgz holds build-gpu-carry/: gpu-check.sh unpacks it there)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-cuda}
CARRY=build-gpu-carry
JOBS=${JOBS:-2}
command -v nvcc >/dev/null || { echo "gpu-build: nvcc not found (needs the CUDA toolkit, e.g. /usr/local/cuda/bin)" >&2; exit 2; }
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDEX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
fi
grep -q '^DEX_CUDA:STRING=ON' "$BUILD/CMakeCache.txt" || { echo "gpu-build: $BUILD is not configured with -DDEX_CUDA=ON" >&2; exit 2; }
start=$(date +%s)
ninja -C "$BUILD" -j"$JOBS" dex_tests_cuda dex_bench_cuda dex_tests_infer dex-bench dex-plan-bench dex-train dex-phantom
echo "gpu-build: targets built in $(( $(date +%s) - start )) s"

rm -rf "$CARRY"
mkdir -p "$CARRY/bin" "$CARRY/lib"
cp "$BUILD/tests/dex_tests_cuda" "$BUILD/bench/dex_bench_cuda" "$BUILD/tests/dex_tests_infer" "$BUILD/bin/dex-bench" \
   "$BUILD/infer/dex-plan-bench" "$BUILD/bin/dex-train" "$BUILD/bin/dex-phantom" "$CARRY/bin/"
# The real CT for dex-bench's end-to-end rows (the GPU machine has no ../shared).
mkdir -p "$CARRY/data"
[ -f ../shared/data/real-ct/imagesTr/case_a.nii.gz ] && cp ../shared/data/real-ct/imagesTr/case_a.nii.gz "$CARRY/data/"
# Shared libraries from ldd, minus what every glibc system (and the GPU image) has, and the driver.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libstdc\+\+\.so|libgcc_s\.so|libcuda\.so|libnccl\.so)'
for bin in "$CARRY"/bin/*; do
  ldd "$bin" | awk '/=>/ && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
    if [[ "$name" =~ $skip ]]; then continue; fi
    [ -e "$CARRY/lib/$name" ] || cp -L "$path" "$CARRY/lib/$name"
  done
done
strip --strip-unneeded "$CARRY"/lib/*.so* 2>/dev/null || true

# ptxas report for the conv kernels (the numbers quoted in reports), compiled standalone like dex_cuda does.
for f in conv3d conv_transpose3d; do  # (conv3d_wgmma.cu: sm_90a, reported by its own build with -DDEX_CUDA_PTXAS_VERBOSE=ON)
  nvcc -std=c++17 -O3 -arch=sm_90 -I. --expt-relaxed-constexpr -lineinfo -Xptxas -v,-warn-spills,-warn-lmem-usage \
    -c "kernels/cuda/$f.cu" -o /tmp/dex-ptxas-$$.o 2>&1 | grep -E 'Compiling entry|registers|spill|smem|warning' \
    | sed -e 's/ptxas info    : //' | { command -v c++filt >/dev/null && c++filt || cat; } \
    | sed -e 's/dex::(anonymous namespace):://; s/dex::ConvArgs, //' > "$CARRY/ptxas-$f.txt" || true
  rm -f /tmp/dex-ptxas-$$.o
done

strip --strip-unneeded "$CARRY"/bin/* 2>/dev/null || true
echo "gpu-build: carry set in $CARRY:"
ls -la "$CARRY/bin" "$CARRY/lib"
# The device tool carries at most 64 MiB with the tree: the set travels as one gzip archive (OpenBLAS alone is 36 MiB),
# which gpu-check.sh unpacks there.
PACK=build-gpu-pack
rm -rf "$PACK" && mkdir -p "$PACK"
tar -czf "$PACK/carry.tgz" "$CARRY"
total=$(du -sb "$PACK" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "gpu-build: $PACK/carry.tgz $((total >> 20)) MiB (unpacked $(( $(du -sb "$CARRY" | cut -f1) >> 20 )) MiB) + tracked tree $((tree >> 20)) MiB (limit 64 MiB together)"
if [ $((total + tree)) -gt $((62 << 20)) ]; then echo "gpu-build: too large to carry" >&2; exit 1; fi
echo "gpu-build: next, in a GPU session: run(command=\"bash scripts/gpu-check.sh\", carry=[\"$PACK\"], timeout_s=480)"
