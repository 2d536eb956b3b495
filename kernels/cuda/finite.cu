// all_finite_cuda (kernels/cuda/split_cuda.h): the loss scaler's inf/nan check of the gradients on the device, so a
// training step copies 4 bytes to the host instead of every gradient. One grid-stride kernel: a thread that sees a
// non-finite value (exponent bits all ones: inf or nan) makes its block set the flag; the flag only ever goes 0 -> 1,
// so concurrent plain stores of the same value need no atomics and the answer does not depend on the order.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/split_cuda.h"

namespace dex {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) all_finite_kernel(const float* x, int64_t n, int* flag) {
  bool bad = false;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    bad |= (__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u;
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

}  // namespace

bool all_finite_cuda(const float* x, int64_t n, cudaStream_t stream) {
  DEX_CHECK(n >= 0, "all_finite_cuda: n must be >= 0, got ", n);
  if (n == 0) return true;
  DEX_CHECK(x, "all_finite_cuda: x must not be null");
  int* flag = static_cast<int*>(stream_workspace(stream, sizeof(int)));
  DEX_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), stream));
  // ~2 waves of 8 blocks per SM on a 132-SM GPU; each thread then reads ~n / 270k values in a coalesced stride.
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 2112) blocks = 2112;
  all_finite_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(x, n, flag);
  DEX_LAUNCH_CHECK("all_finite_kernel", stream);
  int host = 0;
  DEX_CUDA_CHECK(cudaMemcpyAsync(&host, flag, sizeof(int), cudaMemcpyDeviceToHost, stream));
  DEX_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host == 0;
}

}  // namespace dex
