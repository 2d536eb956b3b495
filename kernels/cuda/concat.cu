// CUDA channel concat / split (CPU reference kernels/cpu/concat.cpp): y[v] = [a[v] (Ca channels), b[v] (Cb)].
// v1: grid-stride over output elements; pure data movement, bit-exact.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {
namespace {
__global__ void concat_fwd_kernel_v1(int64_t voxels, int Ca, int Cb, const float* a, const float* b, float* y) {
  const int C = Ca + Cb;
  const int64_t n = voxels * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = i / C;
    const int c = static_cast<int>(i - v * C);
    y[i] = c < Ca ? a[v * Ca + c] : b[v * Cb + (c - Ca)];
  }
}
__global__ void concat_bwd_kernel_v1(int64_t voxels, int Ca, int Cb, const float* dy, float* da, float* db,
                                     bool accumulate) {
  const int C = Ca + Cb;
  const int64_t n = voxels * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = i / C;
    const int c = static_cast<int>(i - v * C);
    float* dst = c < Ca ? (da ? &da[v * Ca + c] : nullptr) : (db ? &db[v * Cb + (c - Ca)] : nullptr);
    if (dst) *dst = accumulate ? __fadd_rn(*dst, dy[i]) : dy[i];
  }
}
}  // namespace

void concat_fwd_cuda(int64_t voxels, int Ca, int Cb, const float* a, const float* b, float* y, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && Ca >= 0 && Cb >= 0 && Ca + Cb > 0, "concat_fwd_cuda: bad sizes voxels=", voxels, " Ca=",
            Ca, " Cb=", Cb);
  if (voxels == 0) return;
  DEX_CHECK(y && (Ca == 0 || a) && (Cb == 0 || b), "concat_fwd_cuda: a, b and y must not be null");
  concat_fwd_kernel_v1<<<grid_1d(voxels * (Ca + Cb), 256), 256, 0, stream>>>(voxels, Ca, Cb, a, b, y);
  DEX_LAUNCH_CHECK("concat_fwd_kernel_v1", stream);
}
void concat_bwd_cuda(int64_t voxels, int Ca, int Cb, const float* dy, float* da, float* db, GradMode mode,
                     cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && Ca >= 0 && Cb >= 0 && Ca + Cb > 0, "concat_bwd_cuda: bad sizes voxels=", voxels, " Ca=",
            Ca, " Cb=", Cb);
  if (voxels == 0 || (!da && !db)) return;
  DEX_CHECK(dy, "concat_bwd_cuda: dy must not be null");
  concat_bwd_kernel_v1<<<grid_1d(voxels * (Ca + Cb), 256), 256, 0, stream>>>(voxels, Ca, Cb, dy, da, db,
                                                                             mode == GradMode::Accumulate);
  DEX_LAUNCH_CHECK("concat_bwd_kernel_v1", stream);
}
}  // namespace dex
