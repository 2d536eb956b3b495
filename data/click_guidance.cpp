#include "data/click_guidance.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/common.h"

namespace dex {

std::vector<float> gaussian_kernel_1d(float sigma) {
  DEX_CHECK(sigma > 0 && std::isfinite(sigma), "gaussian_kernel_1d: sigma must be positive, got ", sigma);
  // MONAI gaussian_1d(sigma, truncated=4, approx="erf"), float32 like torch.
  const int tail = static_cast<int>(std::max(sigma * 4.0f, 0.5f) + 0.5f);
  const float t = 0.70710678f / std::fabs(sigma);
  std::vector<float> k(2 * tail + 1);
  for (int i = -tail; i <= tail; ++i) {
    const float x = static_cast<float>(i);
    const float v = 0.5f * (std::erf(t * (x + 0.5f)) - std::erf(t * (x - 0.5f)));
    k[i + tail] = std::max(v, 0.f);
  }
  return k;
}

void gaussian_heatmap_into(const std::vector<std::array<int, 3>>& points, std::array<int, 3> shape, float* out,
                           int64_t stride, float sigma) {
  for (int a = 0; a < 3; ++a) DEX_CHECK(shape[a] > 0, "gaussian_heatmap: shape must be positive");
  const int64_t n0 = shape[0], n1 = shape[1], n2 = shape[2], n = n0 * n1 * n2;
  // Seed voxels: skip points with any negative coordinate, clamp the rest.
  std::vector<std::array<int64_t, 3>> seeds;
  for (const auto& p : points) {
    if (p[0] < 0 || p[1] < 0 || p[2] < 0) continue;
    seeds.push_back({std::min<int64_t>(p[0], n0 - 1), std::min<int64_t>(p[1], n1 - 1), std::min<int64_t>(p[2], n2 - 1)});
  }
  if (seeds.empty()) {  // MONAI: no smoothing/normalisation unless some voxel is 1: all zeros
    for (int64_t i = 0; i < n; ++i) out[i * stride] = 0.f;
    return;
  }  // else every voxel is written below
  const std::vector<float> k = gaussian_kernel_1d(sigma);
  const int64_t tail = static_cast<int64_t>(k.size() / 2);
  // Everything outside the seeds' bounding box grown by the kernel tail stays exactly 0: work on that box only.
  int64_t lo[3] = {n0, n1, n2}, hi[3] = {-1, -1, -1};
  const int64_t ext[3] = {n0, n1, n2};
  for (const auto& s : seeds)
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], std::max<int64_t>(0, s[a] - tail));
      hi[a] = std::max(hi[a], std::min<int64_t>(ext[a] - 1, s[a] + tail));
    }
  const int64_t b0 = hi[0] - lo[0] + 1, b1 = hi[1] - lo[1] + 1, b2 = hi[2] - lo[2] + 1;
  std::vector<float> a(static_cast<size_t>(b0 * b1 * b2), 0.f), b(a.size(), 0.f);
  auto at = [&](int64_t i, int64_t j, int64_t l) { return (i * b1 + j) * b2 + l; };
  for (const auto& s : seeds) a[at(s[0] - lo[0], s[1] - lo[1], s[2] - lo[2])] = 1.f;
  // Separable zero-padded correlation along axis 0, then 1, then 2 (MONAI's order); double accumulation, float store.
  const int64_t bs[3] = {b0, b1, b2};
  const int64_t st[3] = {b1 * b2, b2, 1};
  // Axes 0 and 1 run a whole row (axis 2) at a time, taps outer, so the reads are contiguous and vectorise; every
  // voxel still sums its taps in increasing order from 0, so the result is the same bit for bit as one voxel at a time.
  std::vector<double> acc(static_cast<size_t>(b2));
  for (int axis = 0; axis < 3; ++axis) {
    const int64_t len = bs[axis], s = st[axis];
    for (int64_t i = 0; i < b0; ++i)
      for (int64_t j = 0; j < b1; ++j) {
        const int64_t row = at(i, j, 0);
        if (axis < 2) {
          const int64_t pos = axis == 0 ? i : j;
          const int64_t t0 = std::max<int64_t>(-tail, -pos), t1 = std::min<int64_t>(tail, len - 1 - pos);
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t t = t0; t <= t1; ++t) {
            const double kt = static_cast<double>(k[t + tail]);
            const float* src = &a[row + t * s];
            for (int64_t l = 0; l < b2; ++l) acc[l] += kt * src[l];
          }
          for (int64_t l = 0; l < b2; ++l) b[row + l] = static_cast<float>(acc[l]);
          continue;
        }
        for (int64_t l = 0; l < b2; ++l) {
          double sum = 0;
          const int64_t t0 = std::max<int64_t>(-tail, -l), t1 = std::min<int64_t>(tail, len - 1 - l);
          for (int64_t t = t0; t <= t1; ++t) sum += static_cast<double>(k[t + tail]) * a[row + l + t];
          b[row + l] = static_cast<float>(sum);
        }
      }
    std::swap(a, b);
  }
  // Min-max normalisation over the whole channel (float32, like numpy). Outside the box the value is 0.
  float mn = a[0], mx = a[0];
  for (float v : a) {
    mn = std::min(mn, v);
    mx = std::max(mx, v);
  }
  if (b0 < n0 || b1 < n1 || b2 < n2) mn = std::min(mn, 0.f), mx = std::max(mx, 0.f);
  const float range = mx - mn;
  if (!(range > 0)) {  // every voxel equal (a grid no larger than one voxel): the click is the peak
    for (int64_t i = 0; i < n; ++i) out[i * stride] = 1.f;
    return;
  }
  const float zero_value = (0.f - mn) / range;
  for (int64_t i = 0; i < n; ++i) out[i * stride] = zero_value;
  for (int64_t i = 0; i < b0; ++i)
    for (int64_t j = 0; j < b1; ++j)
      for (int64_t l = 0; l < b2; ++l)
        out[(((i + lo[0]) * n1 + (j + lo[1])) * n2 + (l + lo[2])) * stride] = (a[at(i, j, l)] - mn) / range;
}

std::vector<float> gaussian_heatmap(const std::vector<std::array<int, 3>>& points, std::array<int, 3> shape,
                                    float sigma) {
  for (int a = 0; a < 3; ++a) DEX_CHECK(shape[a] > 0, "gaussian_heatmap: shape must be positive");
  std::vector<float> out(static_cast<size_t>(int64_t(shape[0]) * shape[1] * shape[2]));
  gaussian_heatmap_into(points, shape, out.data(), 1, sigma);
  return out;
}

}  // namespace dex
