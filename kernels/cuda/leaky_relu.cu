// CUDA LeakyReLU (CPU reference kernels/cpu/leaky_relu.cpp): y = x > 0 ? x : slope * x; backward as PyTorch
// (x == 0 takes the slope). v1: grid-stride, one element per thread, a template on the storage type T (float, __half,
// __nv_bfloat16; kernels/cuda/storage.cuh): fp32 arithmetic (one multiply, one add when accumulating), rounded once to
// T, so bit-exact with the CPU on the same inputs followed by the same rounding.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/storage.cuh"

namespace dex {
namespace {
template <class T>
__global__ void leaky_relu_fwd_kernel_v1(int64_t n, float slope, const T* x, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = to_float(x[i]);
    y[i] = from_float<T>(v > 0.f ? v : __fmul_rn(v, slope));
  }
}
template <class T>
__global__ void leaky_relu_bwd_kernel_v1(int64_t n, float slope, const T* x, const T* dy, T* dx, bool accumulate) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = to_float(x[i]) > 0.f ? to_float(dy[i]) : __fmul_rn(to_float(dy[i]), slope);
    dx[i] = from_float<T>(accumulate ? __fadd_rn(to_float(dx[i]), g) : g);
  }
}

template <class T>
void launch_fwd(int64_t n, float slope, const T* x, T* y, cudaStream_t stream) {
  DEX_CHECK(n >= 0, "leaky_relu_fwd_cuda: negative element count ", n);
  if (n == 0) return;
  DEX_CHECK(x && y, "leaky_relu_fwd_cuda: x and y must not be null");
  leaky_relu_fwd_kernel_v1<T><<<grid_1d(n, 256), 256, 0, stream>>>(n, slope, x, y);
  DEX_LAUNCH_CHECK("leaky_relu_fwd_kernel_v1", stream);
}
template <class T>
void launch_bwd(int64_t n, float slope, const T* x, const T* dy, T* dx, GradMode mode, cudaStream_t stream) {
  DEX_CHECK(n >= 0, "leaky_relu_bwd_cuda: negative element count ", n);
  if (n == 0) return;
  DEX_CHECK(x && dy && dx, "leaky_relu_bwd_cuda: x, dy and dx must not be null");
  leaky_relu_bwd_kernel_v1<T><<<grid_1d(n, 256), 256, 0, stream>>>(n, slope, x, dy, dx, mode == GradMode::Accumulate);
  DEX_LAUNCH_CHECK("leaky_relu_bwd_kernel_v1", stream);
}
}  // namespace

void leaky_relu_fwd_cuda(int64_t n, float slope, const float* x, float* y, cudaStream_t stream) {
  launch_fwd(n, slope, x, y, stream);
}
void leaky_relu_bwd_cuda(int64_t n, float slope, const float* x, const float* dy, float* dx, GradMode mode,
                         cudaStream_t stream) {
  launch_bwd(n, slope, x, dy, dx, mode, stream);
}

void leaky_relu_fwd_cuda(int64_t n, float slope, DType dtype, const void* x, void* y, cudaStream_t stream) {
  storage_dispatch(dtype, "leaky_relu_fwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_fwd(n, slope, static_cast<const T*>(x), static_cast<T*>(y), stream);
  });
}
void leaky_relu_bwd_cuda(int64_t n, float slope, DType dtype, const void* x, const void* dy, void* dx, GradMode mode,
                         cudaStream_t stream) {
  storage_dispatch(dtype, "leaky_relu_bwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_bwd(n, slope, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dx), mode, stream);
  });
}
}  // namespace dex
