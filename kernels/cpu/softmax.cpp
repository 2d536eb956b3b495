// Softmax and argmax over the channels of each voxel (NDHWC, channels contiguous), the CPU reference.
// Softmax is computed in double (max-subtracted), rounded once to fp32.
#include <cmath>
#include <vector>

#include "kernels/elementwise.h"

namespace dex {

void softmax_fwd_cpu(int64_t voxels, int C, const float* x, float* y) {
  DEX_CHECK(voxels >= 0 && C >= 1, "softmax_fwd_cpu: bad sizes voxels=", voxels, " C=", C);
  DEX_CHECK(voxels == 0 || (x && y), "softmax_fwd_cpu: x and y must not be null");
  std::vector<double> e(C);
  for (int64_t v = 0; v < voxels; ++v) {
    const float* xv = x + v * C;
    double mx = xv[0];
    for (int c = 1; c < C; ++c) mx = std::fmax(mx, xv[c]);
    double sum = 0.0;
    for (int c = 0; c < C; ++c) sum += e[c] = std::exp(xv[c] - mx);
    for (int c = 0; c < C; ++c) y[v * C + c] = static_cast<float>(e[c] / sum);  // y may alias x
  }
}

// dx = y * (dy - sum_c y*dy), overwritten.
void softmax_bwd_cpu(int64_t voxels, int C, const float* y, const float* dy, float* dx) {
  DEX_CHECK(voxels >= 0 && C >= 1, "softmax_bwd_cpu: bad sizes voxels=", voxels, " C=", C);
  DEX_CHECK(voxels == 0 || (y && dy && dx), "softmax_bwd_cpu: y, dy and dx must not be null");
  for (int64_t v = 0; v < voxels; ++v) {
    double dot = 0.0;
    for (int c = 0; c < C; ++c) dot += static_cast<double>(y[v * C + c]) * dy[v * C + c];
    for (int c = 0; c < C; ++c)
      dx[v * C + c] = static_cast<float>(y[v * C + c] * (static_cast<double>(dy[v * C + c]) - dot));
  }
}

// Ties go to the lowest index; a NaN counts as the maximum (the first NaN wins), as torch.argmax.
void argmax_cpu(int64_t voxels, int C, const float* x, uint8_t* out) {
  DEX_CHECK(voxels >= 0 && C >= 1 && C <= 256, "argmax_cpu: need voxels >= 0 and 1 <= C <= 256 (uint8 output), got voxels=",
            voxels, " C=", C);
  DEX_CHECK(voxels == 0 || (x && out), "argmax_cpu: x and out must not be null");
  for (int64_t v = 0; v < voxels; ++v) {
    const float* xv = x + v * C;
    int best = 0;
    for (int c = 1; c < C && !std::isnan(xv[best]); ++c)
      if (xv[c] > xv[best] || std::isnan(xv[c])) best = c;
    out[v] = static_cast<uint8_t>(best);
  }
}

}  // namespace dex
