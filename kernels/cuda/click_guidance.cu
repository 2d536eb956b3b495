// The DeepEdit click-guidance heatmap (spec §3.9, MONAI AddGuidanceSignalDeepEditd with GaussianFilter(sigma,
// truncated=4, approx="erf")) on the GPU. CPU counterpart: data/click_guidance.*.
// v1: scatter the clicks (points passed by value, 128 per launch), three separable 1-D passes in MONAI's order
// (axis D, then H, then W; zero padding), then one block finds min and max and normalises (s - min)/(max - min).
// Matches data/click_guidance.cpp bit for bit by construction (same taps, order and double accumulation).
// Taps: g(x) = 1/2 [erf((x + 1/2)/(sigma sqrt 2)) - erf((x - 1/2)/(sigma sqrt 2))], x in [-tail, tail],
// tail = int(4 sigma + 0.5) (25 taps for sigma 3), clamped >= 0, not renormalised; computed as MONAI does, in fp32.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {
namespace {

constexpr int kMaxTaps = 65;
constexpr int kPointsPerLaunch = 128;

struct Taps {
  int tail;
  float g[kMaxTaps];
};
struct Points {
  int count;
  int p[kPointsPerLaunch][3];
};

__global__ void click_scatter_kernel_v1(int D, int H, int W, Points pts, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= pts.count) return;
  const int d = min(max(pts.p[i][0], 0), D - 1), h = min(max(pts.p[i][1], 0), H - 1),
            w = min(max(pts.p[i][2], 0), W - 1);
  out[(int64_t(d) * H + h) * W + w] = 1.f;  // duplicates write the same value
}

// 1-D correlation along one axis with zero padding: out[i] = sum_j in[i + j] g[j + tail]. `stride` is the element
// distance between neighbours on that axis, `len` its length.
__global__ void click_blur_kernel_v1(int64_t total, int64_t stride, int len, Taps taps, const float* in, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int pos = static_cast<int>((i / stride) % len);
    // Double accumulation in ascending tap order, as the CPU reference; float x float products are exact in double.
    double s = 0;
    for (int j = -taps.tail; j <= taps.tail; ++j) {
      const int q = pos + j;
      if (q >= 0 && q < len) s += double(taps.g[j + taps.tail]) * in[i + int64_t(j) * stride];
    }
    out[i] = static_cast<float>(s);
  }
}

// One block: min and max over the volume (order-free, exact), then out = (in - min) / (max - min); a constant volume
// (a grid of one voxel) becomes all 1, as the CPU reference (the click is the peak).
__global__ void __launch_bounds__(1024) click_normalise_kernel_v1(int64_t total, const float* in, float* out) {
  __shared__ float smin[1024], smax[1024];
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    lo = fminf(lo, in[i]);
    hi = fmaxf(hi, in[i]);
  }
  smin[threadIdx.x] = lo;
  smax[threadIdx.x] = hi;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      smin[threadIdx.x] = fminf(smin[threadIdx.x], smin[threadIdx.x + w]);
      smax[threadIdx.x] = fmaxf(smax[threadIdx.x], smax[threadIdx.x + w]);
    }
    __syncthreads();
  }
  const float mn = smin[0], range = smax[0] - smin[0];
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) out[i] = range > 0.f ? (in[i] - mn) / range : 1.f;
}

}  // namespace

void click_heatmap_cuda(int D, int H, int W, const int* points_host, int n_points, float sigma, float* out, float* work,
                        cudaStream_t stream) {
  DEX_CHECK(D > 0 && H > 0 && W > 0, "click_heatmap_cuda: bad grid ", D, "x", H, "x", W);
  DEX_CHECK(sigma > 0.f, "click_heatmap_cuda: sigma must be positive, got ", sigma);
  DEX_CHECK(n_points == 0 || points_host, "click_heatmap_cuda: points_host is null with ", n_points, " points");
  const int64_t total = int64_t(D) * H * W;
  DEX_CUDA_CHECK(cudaMemsetAsync(out, 0, total * sizeof(float), stream));
  int valid = 0;
  Points pts{};
  auto flush = [&] {
    if (pts.count == 0) return;
    click_scatter_kernel_v1<<<1, kPointsPerLaunch, 0, stream>>>(D, H, W, pts, out);
    DEX_LAUNCH_CHECK("click_scatter_kernel_v1", stream);
    pts.count = 0;
  };
  for (int i = 0; i < n_points; ++i) {
    const int* q = points_host + 3 * i;
    if (q[0] < 0 || q[1] < 0 || q[2] < 0) continue;  // MONAI skips a point with any negative coordinate
    pts.p[pts.count][0] = q[0];
    pts.p[pts.count][1] = q[1];
    pts.p[pts.count][2] = q[2];
    ++valid;
    if (++pts.count == kPointsPerLaunch) flush();
  }
  flush();
  if (valid == 0) return;  // no click: the channel stays all zero

  Taps taps{};
  taps.tail = static_cast<int>(std::fmax(sigma * 4.0f, 0.5f) + 0.5f);
  DEX_CHECK(2 * taps.tail + 1 <= kMaxTaps, "click_heatmap_cuda: sigma ", sigma, " needs ", 2 * taps.tail + 1,
            " taps, more than ", kMaxTaps);
  const float t = 0.70710678f / std::fabs(sigma);
  for (int j = -taps.tail; j <= taps.tail; ++j) {
    const float x = static_cast<float>(j);
    const float g = 0.5f * (std::erf(t * (x + 0.5f)) - std::erf(t * (x - 0.5f)));
    taps.g[j + taps.tail] = g > 0.f ? g : 0.f;
  }
  const unsigned blocks = grid_1d(total, 256);
  click_blur_kernel_v1<<<blocks, 256, 0, stream>>>(total, int64_t(H) * W, D, taps, out, work);
  DEX_LAUNCH_CHECK("click_blur_kernel_v1 (D)", stream);
  click_blur_kernel_v1<<<blocks, 256, 0, stream>>>(total, W, H, taps, work, out);
  DEX_LAUNCH_CHECK("click_blur_kernel_v1 (H)", stream);
  click_blur_kernel_v1<<<blocks, 256, 0, stream>>>(total, 1, W, taps, out, work);
  DEX_LAUNCH_CHECK("click_blur_kernel_v1 (W)", stream);
  click_normalise_kernel_v1<<<1, 1024, 0, stream>>>(total, work, out);
  DEX_LAUNCH_CHECK("click_normalise_kernel_v1", stream);
}

}  // namespace dex
