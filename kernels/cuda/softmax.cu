// CUDA softmax / argmax over channels (CPU reference kernels/cpu/softmax.cpp), NDHWC. Softmax in double, rounded
// once to fp32, as the reference; argmax: ties to the lowest index, the first NaN wins (torch.argmax).
// v1: one thread per voxel (C is 2 in the DeepEdit head).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {
namespace {
__global__ void softmax_fwd_kernel_v1(int64_t voxels, int C, const float* x, float* y) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < voxels; v += int64_t(gridDim.x) * blockDim.x) {
    const float* xv = x + v * C;
    double mx = xv[0];
    for (int c = 1; c < C; ++c) mx = fmax(mx, double(xv[c]));
    double sum = 0;
    for (int c = 0; c < C; ++c) sum += exp(double(xv[c]) - mx);
    // y may alias x: recompute each exponential from x before overwriting that element only.
    for (int c = 0; c < C; ++c) y[v * C + c] = static_cast<float>(exp(double(xv[c]) - mx) / sum);
  }
}
__global__ void softmax_bwd_kernel_v1(int64_t voxels, int C, const float* y, const float* dy, float* dx) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < voxels; v += int64_t(gridDim.x) * blockDim.x) {
    double dot = 0;
    for (int c = 0; c < C; ++c) dot += double(y[v * C + c]) * dy[v * C + c];
    for (int c = 0; c < C; ++c) dx[v * C + c] = static_cast<float>(y[v * C + c] * (double(dy[v * C + c]) - dot));
  }
}
__global__ void argmax_kernel_v1(int64_t voxels, int C, const float* x, uint8_t* out) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < voxels; v += int64_t(gridDim.x) * blockDim.x) {
    const float* xv = x + v * C;
    int best = 0;
    for (int c = 1; c < C && !isnan(xv[best]); ++c)
      if (xv[c] > xv[best] || isnan(xv[c])) best = c;
    out[v] = static_cast<uint8_t>(best);
  }
}
}  // namespace

void softmax_fwd_cuda(int64_t voxels, int C, const float* x, float* y, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && C >= 1, "softmax_fwd_cuda: bad sizes voxels=", voxels, " C=", C);
  if (voxels == 0) return;
  DEX_CHECK(x && y, "softmax_fwd_cuda: x and y must not be null");
  softmax_fwd_kernel_v1<<<grid_1d(voxels, 256), 256, 0, stream>>>(voxels, C, x, y);
  DEX_LAUNCH_CHECK("softmax_fwd_kernel_v1", stream);
}
void softmax_bwd_cuda(int64_t voxels, int C, const float* y, const float* dy, float* dx, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && C >= 1, "softmax_bwd_cuda: bad sizes voxels=", voxels, " C=", C);
  if (voxels == 0) return;
  DEX_CHECK(y && dy && dx, "softmax_bwd_cuda: y, dy and dx must not be null");
  softmax_bwd_kernel_v1<<<grid_1d(voxels, 256), 256, 0, stream>>>(voxels, C, y, dy, dx);
  DEX_LAUNCH_CHECK("softmax_bwd_kernel_v1", stream);
}
void argmax_cuda(int64_t voxels, int C, const float* x, uint8_t* out, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && C >= 1 && C <= 256, "argmax_cuda: need voxels >= 0 and 1 <= C <= 256, got voxels=", voxels,
            " C=", C);
  if (voxels == 0) return;
  DEX_CHECK(x && out, "argmax_cuda: x and out must not be null");
  argmax_kernel_v1<<<grid_1d(voxels, 256), 256, 0, stream>>>(voxels, C, x, out);
  DEX_LAUNCH_CHECK("argmax_kernel_v1", stream);
}
}  // namespace dex
