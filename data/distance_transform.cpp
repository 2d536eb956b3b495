#include "data/distance_transform.h"

#include <algorithm>
#include <limits>

#include "kernels/common.h"

namespace dex {

std::vector<int32_t> distance_transform_cdt_3d(const uint8_t* mask, const std::array<int64_t, 3>& shape) {
  const int64_t n0 = shape[0], n1 = shape[1], n2 = shape[2];
  DEX_CHECK(n0 >= 0 && n1 >= 0 && n2 >= 0, "distance_transform_cdt_3d: negative shape");
  const int64_t n = n0 * n1 * n2;
  constexpr int32_t kInf = std::numeric_limits<int32_t>::max() / 2;
  std::vector<int32_t> d(static_cast<size_t>(n));
  bool any_outside = false;
  for (int64_t v = 0; v < n; ++v) {
    d[v] = mask[v] ? kInf : 0;
    any_outside |= !mask[v];
  }
  if (!any_outside) {  // scipy: no background voxel -> -1 everywhere
    std::fill(d.begin(), d.end(), -1);
    return d;
  }
  // One pass of the chamfer mask: `sign` = +1 scans in raster order and visits the 13 neighbours that precede a voxel
  // (offset (di,dj,dk) lexicographically negative), -1 scans backwards and visits the 13 that follow it.
  // Unit weights: chessboard metric.
  auto pass = [&](int sign) {
    const int64_t s0 = sign > 0 ? 0 : n0 - 1, s1 = sign > 0 ? 0 : n1 - 1, s2 = sign > 0 ? 0 : n2 - 1;
    const int64_t step = sign;
    for (int64_t c0 = 0; c0 < n0; ++c0) {
      const int64_t i = s0 + step * c0;
      for (int64_t c1 = 0; c1 < n1; ++c1) {
        const int64_t j = s1 + step * c1;
        for (int64_t c2 = 0; c2 < n2; ++c2) {
          const int64_t k = s2 + step * c2;
          int32_t& cur = d[(i * n1 + j) * n2 + k];
          if (cur == 0) continue;
          int32_t best = cur;
          // Neighbours sign * (di,dj,dk) with (di,dj,dk) lexicographically before (0,0,0).
          for (int di = -1; di <= 0; ++di) {
            const int64_t ii = i + sign * di;
            if (ii < 0 || ii >= n0) continue;
            for (int dj = -1; dj <= 1; ++dj) {
              if (di == 0 && dj > 0) break;
              const int64_t jj = j + sign * dj;
              if (jj < 0 || jj >= n1) continue;
              for (int dk = -1; dk <= 1; ++dk) {
                if (di == 0 && dj == 0 && dk >= 0) break;
                const int64_t kk = k + sign * dk;
                if (kk < 0 || kk >= n2) continue;
                best = std::min(best, d[(ii * n1 + jj) * n2 + kk] + 1);
              }
            }
          }
          cur = best;
        }
      }
    }
  };
  pass(+1);
  pass(-1);
  return d;
}

std::vector<int32_t> distance_transform_cdt_2d(const uint8_t* mask, int64_t H, int64_t W) {
  return distance_transform_cdt_3d(mask, {1, H, W});
}

}  // namespace dex
