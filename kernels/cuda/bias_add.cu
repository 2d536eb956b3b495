// CUDA per-channel bias (CPU reference kernels/cpu/bias_add.cpp): y[v][c] += bias[c]; dbias[c] += sum_v dy[v][c].
// y and dy are stored as T (float, __half, __nv_bfloat16; kernels/cuda/storage.cuh), bias and dbias are fp32.
// v1: forward grid-stride (one fp32 add, rounded once to T); backward one (32 channels x 32 slices) block per channel
// chunk, double sums in fixed order.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/storage.cuh"

namespace dex {
namespace {
constexpr int kBY = 32;
template <class T>
__global__ void bias_add_fwd_kernel_v1(int64_t n, int C, const float* bias, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_float<T>(__fadd_rn(to_float(y[i]), bias[i % C]));
}
template <class T>
__global__ void __launch_bounds__(32 * kBY) bias_add_bwd_kernel_v1(int64_t voxels, int C, const T* dy, float* dbias) {
  __shared__ double red[32 * kBY];
  const int c = blockIdx.x * 32 + threadIdx.x;
  double s = 0;
  if (c < C)
    for (int64_t v = threadIdx.y; v < voxels; v += kBY) s += to_float(dy[v * C + c]);
  s = column_sum<kBY>(s, red);
  if (c < C && threadIdx.y == 0) dbias[c] = static_cast<float>(dbias[c] + s);
}

template <class T>
void launch_fwd(int64_t voxels, int C, const float* bias, T* y, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && C >= 1, "bias_add_fwd_cuda: bad sizes voxels=", voxels, " C=", C);
  if (voxels == 0) return;
  DEX_CHECK(bias && y, "bias_add_fwd_cuda: bias and y must not be null");
  bias_add_fwd_kernel_v1<T><<<grid_1d(voxels * C, 256), 256, 0, stream>>>(voxels * C, C, bias, y);
  DEX_LAUNCH_CHECK("bias_add_fwd_kernel_v1", stream);
}
template <class T>
void launch_bwd(int64_t voxels, int C, const T* dy, float* dbias, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && C >= 1, "bias_add_bwd_cuda: bad sizes voxels=", voxels, " C=", C);
  DEX_CHECK(dbias && (voxels == 0 || dy), "bias_add_bwd_cuda: dy and dbias must not be null");
  bias_add_bwd_kernel_v1<T><<<(C + 31) / 32, dim3(32, kBY), 0, stream>>>(voxels, C, dy, dbias);
  DEX_LAUNCH_CHECK("bias_add_bwd_kernel_v1", stream);
}
}  // namespace

void bias_add_fwd_cuda(int64_t voxels, int C, const float* bias, float* y, cudaStream_t stream) {
  launch_fwd(voxels, C, bias, y, stream);
}
void bias_add_bwd_cuda(int64_t voxels, int C, const float* dy, float* dbias, cudaStream_t stream) {
  launch_bwd(voxels, C, dy, dbias, stream);
}

void bias_add_fwd_cuda(int64_t voxels, int C, DType dtype, const float* bias, void* y, cudaStream_t stream) {
  storage_dispatch(dtype, "bias_add_fwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_fwd(voxels, C, bias, static_cast<T*>(y), stream);
  });
}
void bias_add_bwd_cuda(int64_t voxels, int C, DType dtype, const void* dy, float* dbias, cudaStream_t stream) {
  storage_dispatch(dtype, "bias_add_bwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_bwd(voxels, C, static_cast<const T*>(dy), dbias, stream);
  });
}
}  // namespace dex
