// LeakyReLU, the CPU reference: y = x > 0 ? x : slope * x (one fp32 multiply, as PyTorch).
// Backward as PyTorch's leaky_relu_backward: dx = x > 0 ? dy : slope * dy (so x == 0 takes the slope).
#include <algorithm>

#include "kernels/elementwise.h"

namespace dex {

void leaky_relu_fwd_cpu(int64_t n, float slope, const float* x, float* y) {
  DEX_CHECK(n >= 0, "leaky_relu_fwd_cpu: negative element count ", n);
  DEX_CHECK(n == 0 || (x && y), "leaky_relu_fwd_cpu: x and y must not be null");
  if (slope > 0.0f && slope <= 1.0f) {
    // For 0 < slope <= 1, max(x, slope*x) is the same function bit for bit (signed zeros, infinities and NaN
    // included), and GCC vectorises it; the ternary's conditional multiply stays a mispredicted branch under
    // -ftrapping-math (about 5x slower on random signs).
    for (int64_t i = 0; i < n; ++i) y[i] = std::max(x[i], x[i] * slope);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
  }
}

void leaky_relu_bwd_cpu(int64_t n, float slope, const float* x, const float* dy, float* dx, GradMode mode) {
  DEX_CHECK(n >= 0, "leaky_relu_bwd_cpu: negative element count ", n);
  DEX_CHECK(n == 0 || (x && dy && dx), "leaky_relu_bwd_cpu: x, dy and dx must not be null");
  for (int64_t i = 0; i < n; ++i) {
    float g = x[i] > 0.0f ? dy[i] : dy[i] * slope;
    dx[i] = mode == GradMode::Accumulate ? dx[i] + g : g;
  }
}

}  // namespace dex
