// Small device helpers shared by the kernels/cuda/*.cu files (file-local use only; no templates beyond one level).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common.h"
#include "kernels/cuda/cuda_runtime.h"

namespace dex {

constexpr int kWarpSize = 32;

// Blocks for a 1-D grid-stride launch: enough to fill the GPU, never more than needed.
inline unsigned grid_1d(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535LL * 8) b = 65535LL * 8;
  return static_cast<unsigned>(b);
}

// Gradient write per GradMode: overwrite or accumulate.
__device__ __forceinline__ void store_grad(float* p, float v, bool accumulate) { *p = accumulate ? *p + v : v; }

// Deterministic reduction of one double per thread over threadIdx.y of a (32 x BY) block: column tx receives the sum
// of its BY values in ascending ty order (fixed order, no atomics). `smem` holds 32*BY doubles. All threads of the
// block must call it; every thread of column tx gets the result.
template <int BY>
__device__ __forceinline__ double column_sum(double v, double* smem) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  smem[ty * 32 + tx] = v;
  __syncthreads();
  double s = 0;
  for (int i = 0; i < BY; ++i) s += smem[i * 32 + tx];
  __syncthreads();  // smem may be reused right after
  return s;
}

}  // namespace dex
