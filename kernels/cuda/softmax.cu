// CUDA softmax / argmax over channels (CPU reference kernels/cpu/softmax.cpp), NDHWC. Softmax in double, rounded
// once to fp32, as the reference; argmax: ties to the lowest index, the first NaN wins (torch.argmax).
// Storage: the inputs x (logits) and the gradients dy, dx as T (float, __half, __nv_bfloat16; storage.cuh); the
// probabilities y are always fp32 (ops16_cuda.h says why).
// v1: one thread per voxel (C is 2 in the DeepEdit head).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/storage.cuh"

namespace dex {
namespace {
template <class T>
__global__ void softmax_fwd_kernel_v1(int64_t voxels, int C, const T* x, float* y) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < voxels; v += int64_t(gridDim.x) * blockDim.x) {
    const T* xv = x + v * C;
    double mx = to_float(xv[0]);
    for (int c = 1; c < C; ++c) mx = fmax(mx, double(to_float(xv[c])));
    double sum = 0;
    for (int c = 0; c < C; ++c) sum += exp(double(to_float(xv[c])) - mx);
    // y may alias x (fp32 only): recompute each exponential from x before overwriting that element only.
    for (int c = 0; c < C; ++c) y[v * C + c] = static_cast<float>(exp(double(to_float(xv[c])) - mx) / sum);
  }
}
template <class T>
__global__ void softmax_bwd_kernel_v1(int64_t voxels, int C, const float* y, const T* dy, T* dx) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < voxels; v += int64_t(gridDim.x) * blockDim.x) {
    double dot = 0;
    for (int c = 0; c < C; ++c) dot += double(y[v * C + c]) * to_float(dy[v * C + c]);
    for (int c = 0; c < C; ++c)
      dx[v * C + c] = from_float<T>(static_cast<float>(y[v * C + c] * (double(to_float(dy[v * C + c])) - dot)));
  }
}
template <class T>
__global__ void argmax_kernel_v1(int64_t voxels, int C, const T* x, uint8_t* out) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < voxels; v += int64_t(gridDim.x) * blockDim.x) {
    const T* xv = x + v * C;
    int best = 0;
    for (int c = 1; c < C && !isnan(to_float(xv[best])); ++c)
      if (to_float(xv[c]) > to_float(xv[best]) || isnan(to_float(xv[c]))) best = c;
    out[v] = static_cast<uint8_t>(best);
  }
}

template <class T>
void launch_fwd(int64_t voxels, int C, const T* x, float* y, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && C >= 1, "softmax_fwd_cuda: bad sizes voxels=", voxels, " C=", C);
  if (voxels == 0) return;
  DEX_CHECK(x && y, "softmax_fwd_cuda: x and y must not be null");
  softmax_fwd_kernel_v1<T><<<grid_1d(voxels, 256), 256, 0, stream>>>(voxels, C, x, y);
  DEX_LAUNCH_CHECK("softmax_fwd_kernel_v1", stream);
}
template <class T>
void launch_bwd(int64_t voxels, int C, const float* y, const T* dy, T* dx, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && C >= 1, "softmax_bwd_cuda: bad sizes voxels=", voxels, " C=", C);
  if (voxels == 0) return;
  DEX_CHECK(y && dy && dx, "softmax_bwd_cuda: y, dy and dx must not be null");
  softmax_bwd_kernel_v1<T><<<grid_1d(voxels, 256), 256, 0, stream>>>(voxels, C, y, dy, dx);
  DEX_LAUNCH_CHECK("softmax_bwd_kernel_v1", stream);
}
template <class T>
void launch_argmax(int64_t voxels, int C, const T* x, uint8_t* out, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && C >= 1 && C <= 256, "argmax_cuda: need voxels >= 0 and 1 <= C <= 256, got voxels=", voxels,
            " C=", C);
  if (voxels == 0) return;
  DEX_CHECK(x && out, "argmax_cuda: x and out must not be null");
  argmax_kernel_v1<T><<<grid_1d(voxels, 256), 256, 0, stream>>>(voxels, C, x, out);
  DEX_LAUNCH_CHECK("argmax_kernel_v1", stream);
}
}  // namespace

void softmax_fwd_cuda(int64_t voxels, int C, const float* x, float* y, cudaStream_t stream) {
  launch_fwd(voxels, C, x, y, stream);
}
void softmax_bwd_cuda(int64_t voxels, int C, const float* y, const float* dy, float* dx, cudaStream_t stream) {
  launch_bwd(voxels, C, y, dy, dx, stream);
}
void argmax_cuda(int64_t voxels, int C, const float* x, uint8_t* out, cudaStream_t stream) {
  launch_argmax(voxels, C, x, out, stream);
}

void softmax_fwd_cuda(int64_t voxels, int C, DType dtype, const void* x, float* y, cudaStream_t stream) {
  storage_dispatch(dtype, "softmax_fwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_fwd(voxels, C, static_cast<const T*>(x), y, stream);
  });
}
void softmax_bwd_cuda(int64_t voxels, int C, DType dtype, const float* y, const void* dy, void* dx,
                      cudaStream_t stream) {
  storage_dispatch(dtype, "softmax_bwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_bwd(voxels, C, y, static_cast<const T*>(dy), static_cast<T*>(dx), stream);
  });
}
void argmax_cuda(int64_t voxels, int C, DType dtype, const void* x, uint8_t* out, cudaStream_t stream) {
  storage_dispatch(dtype, "argmax_cuda", [&](auto t) {
    using T = decltype(t);
    launch_argmax(voxels, C, static_cast<const T*>(x), out, stream);
  });
}
}  // namespace dex
