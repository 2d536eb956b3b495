// Per-channel bias (the output head's 1x1x1 conv), NDHWC: y[v*C + c] += bias[c]; dbias[c] += sum_v dy[v*C + c].
#include <vector>

#include "kernels/elementwise.h"

namespace dex {

void bias_add_fwd_cpu(int64_t voxels, int C, const float* bias, float* y) {
  DEX_CHECK(voxels >= 0 && C >= 1, "bias_add_fwd_cpu: bad sizes voxels=", voxels, " C=", C);
  DEX_CHECK(voxels == 0 || (bias && y), "bias_add_fwd_cpu: bias and y must not be null");
  for (int64_t v = 0; v < voxels; ++v)
    for (int c = 0; c < C; ++c) y[v * C + c] += bias[c];
}

void bias_add_bwd_cpu(int64_t voxels, int C, const float* dy, float* dbias) {
  DEX_CHECK(voxels >= 0 && C >= 1, "bias_add_bwd_cpu: bad sizes voxels=", voxels, " C=", C);
  DEX_CHECK(dbias && (voxels == 0 || dy), "bias_add_bwd_cpu: dy and dbias must not be null");
  std::vector<double> sum(C, 0.0);
  for (int64_t v = 0; v < voxels; ++v)
    for (int c = 0; c < C; ++c) sum[c] += dy[v * C + c];
  for (int c = 0; c < C; ++c) dbias[c] = static_cast<float>(dbias[c] + sum[c]);
}

}  // namespace dex
