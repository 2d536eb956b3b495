// CUDA LeakyReLU (CPU reference kernels/cpu/leaky_relu.cpp): y = x > 0 ? x : slope * x; backward as PyTorch
// (x == 0 takes the slope). v1: grid-stride, one element per thread. Bit-exact with the CPU (one multiply).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {
namespace {
__global__ void leaky_relu_fwd_kernel_v1(int64_t n, float slope, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    y[i] = v > 0.f ? v : __fmul_rn(v, slope);
  }
}
__global__ void leaky_relu_bwd_kernel_v1(int64_t n, float slope, const float* x, const float* dy, float* dx,
                                         bool accumulate) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = x[i] > 0.f ? dy[i] : __fmul_rn(dy[i], slope);
    dx[i] = accumulate ? __fadd_rn(dx[i], g) : g;
  }
}
}  // namespace

void leaky_relu_fwd_cuda(int64_t n, float slope, const float* x, float* y, cudaStream_t stream) {
  DEX_CHECK(n >= 0, "leaky_relu_fwd_cuda: negative element count ", n);
  if (n == 0) return;
  DEX_CHECK(x && y, "leaky_relu_fwd_cuda: x and y must not be null");
  leaky_relu_fwd_kernel_v1<<<grid_1d(n, 256), 256, 0, stream>>>(n, slope, x, y);
  DEX_LAUNCH_CHECK("leaky_relu_fwd_kernel_v1", stream);
}
void leaky_relu_bwd_cuda(int64_t n, float slope, const float* x, const float* dy, float* dx, GradMode mode,
                         cudaStream_t stream) {
  DEX_CHECK(n >= 0, "leaky_relu_bwd_cuda: negative element count ", n);
  if (n == 0) return;
  DEX_CHECK(x && dy && dx, "leaky_relu_bwd_cuda: x, dy and dx must not be null");
  leaky_relu_bwd_kernel_v1<<<grid_1d(n, 256), 256, 0, stream>>>(n, slope, x, dy, dx, mode == GradMode::Accumulate);
  DEX_LAUNCH_CHECK("leaky_relu_bwd_kernel_v1", stream);
}
}  // namespace dex
