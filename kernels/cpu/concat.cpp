// Channel concat / split, NDHWC: y[v][0..Ca) = a[v], y[v][Ca..Ca+Cb) = b[v]. Pure data movement (bit-exact).
#include "kernels/elementwise.h"

namespace dex {

void concat_fwd_cpu(int64_t voxels, int Ca, int Cb, const float* a, const float* b, float* y) {
  DEX_CHECK(voxels >= 0 && Ca >= 0 && Cb >= 0 && Ca + Cb >= 1, "concat_fwd_cpu: bad sizes voxels=", voxels,
            " Ca=", Ca, " Cb=", Cb);
  DEX_CHECK(voxels == 0 || (y && (Ca == 0 || a) && (Cb == 0 || b)), "concat_fwd_cpu: a, b and y must not be null");
  const int C = Ca + Cb;
  for (int64_t v = 0; v < voxels; ++v) {
    for (int c = 0; c < Ca; ++c) y[v * C + c] = a[v * Ca + c];
    for (int c = 0; c < Cb; ++c) y[v * C + Ca + c] = b[v * Cb + c];
  }
}

// da / db receive their channels of dy per `mode`; either may be null (no gradient wanted).
void concat_bwd_cpu(int64_t voxels, int Ca, int Cb, const float* dy, float* da, float* db, GradMode mode) {
  DEX_CHECK(voxels >= 0 && Ca >= 0 && Cb >= 0 && Ca + Cb >= 1, "concat_bwd_cpu: bad sizes voxels=", voxels,
            " Ca=", Ca, " Cb=", Cb);
  DEX_CHECK(voxels == 0 || dy, "concat_bwd_cpu: dy must not be null");
  const int C = Ca + Cb;
  const bool acc = mode == GradMode::Accumulate;
  for (int64_t v = 0; v < voxels; ++v) {
    if (da)
      for (int c = 0; c < Ca; ++c) da[v * Ca + c] = acc ? da[v * Ca + c] + dy[v * C + c] : dy[v * C + c];
    if (db)
      for (int c = 0; c < Cb; ++c) db[v * Cb + c] = acc ? db[v * Cb + c] + dy[v * C + Ca + c] : dy[v * C + Ca + c];
  }
}

}  // namespace dex
