// CUDA per-channel bias (CPU reference kernels/cpu/bias_add.cpp): y[v][c] += bias[c]; dbias[c] += sum_v dy[v][c].
// y and dy are stored as T (float, __half, __nv_bfloat16; kernels/cuda/storage.cuh), bias and dbias are fp32.
// Forward: grid-stride (one fp32 add, rounded once to T). Backward, split (kernels/cuda/reduce_split.h): the voxels cut
// into a fixed number of chunks, one (32 channels x 32 slices) block per (chunk, channel group) writes double partial
// sums to the stream's workspace (split_cuda.h), then one thread per channel adds them in chunk order into dbias
// (deterministic, no atomics). The old single-block-per-channel-group backward (v1) read all voxels on one SM.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce_split.h"
#include "kernels/cuda/split_cuda.h"
#include "kernels/cuda/storage.cuh"

namespace dex {
namespace {
constexpr int kBY = 32;
template <class T>
__global__ void bias_add_fwd_kernel_v1(int64_t n, int C, const float* bias, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_float<T>(__fadd_rn(to_float(y[i]), bias[i % C]));
}
// grid (chunks, channel groups): partial[k][c] = sum over chunk k of dy[v][c], in fixed order.
template <class T>
__global__ void __launch_bounds__(32 * kBY) bias_add_bwd_partials_kernel(int64_t voxels, int C, split::Plan plan,
                                                                        const T* dy, double* partial) {
  __shared__ double red[32 * kBY];
  const int c = blockIdx.y * 32 + threadIdx.x;
  int64_t b, e;
  split::chunk_range(plan, voxels, blockIdx.x, &b, &e);
  double s = 0;
  if (c < C)
    for (int64_t v = b + threadIdx.y; v < e; v += kBY) s += to_float(dy[v * C + c]);
  s = column_sum<kBY>(s, red);
  if (c < C && threadIdx.y == 0) partial[size_t(blockIdx.x) * C + c] = s;
}
// One thread per channel: the partials in chunk order, added to dbias once.
__global__ void bias_add_bwd_combine_kernel(int C, int chunks, const double* partial, float* dbias) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double s = 0;
  for (int k = 0; k < chunks; ++k) s += partial[size_t(k) * C + c];
  dbias[c] = static_cast<float>(dbias[c] + s);
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
  if (voxels == 0) return;  // dbias += 0
  const int groups = (C + 31) / 32;
  DEX_CHECK(groups <= 65535, "bias_add_bwd_cuda: C=", C, " is too large");
  const split::Plan plan = split::make_plan(voxels, groups);
  auto* partial = static_cast<double*>(stream_workspace(stream, size_t(plan.chunks) * C * sizeof(double)));
  bias_add_bwd_partials_kernel<T><<<dim3(plan.chunks, groups), dim3(32, kBY), 0, stream>>>(voxels, C, plan, dy, partial);
  DEX_LAUNCH_CHECK("bias_add_bwd_partials_kernel", stream);
  bias_add_bwd_combine_kernel<<<(C + 127) / 128, 128, 0, stream>>>(C, plan.chunks, partial, dbias);
  DEX_LAUNCH_CHECK("bias_add_bwd_combine_kernel", stream);
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
