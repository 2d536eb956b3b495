// The one kernel GradBuckets needs on CUDA: g *= s over the flat gradient buffer (the mean over ranks after the
// bucket all-reduces), on the default (compute) stream, after the waits that order it behind the reductions.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_runtime.h"

namespace dex {

namespace {
__global__ void grad_scale_kernel(float* g, int64_t n, float s) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) g[i] *= s;
}
}  // namespace

void grad_scale_cuda(float* g, int64_t n, float s) {
  if (n <= 0) return;
  const int threads = 256;
  const int64_t want = (n + threads - 1) / threads;
  const int blocks = static_cast<int>(want < 4096 ? want : 4096);
  grad_scale_kernel<<<blocks, threads>>>(g, n, s);
  DEX_LAUNCH_CHECK("grad_scale_kernel", nullptr);
}

}  // namespace dex
