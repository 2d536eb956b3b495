// LeakyReLU, the CPU reference: y = x > 0 ? x : slope * x (one fp32 multiply, as PyTorch).
// Backward as PyTorch's leaky_relu_backward: dx = x > 0 ? dy : slope * dy (so x == 0 takes the slope).
#include <algorithm>

#include "kernels/elementwise.h"
#include "kernels/half.h"

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
  // g = x > 0 ? dy : dy * slope, written as a bit select of the two candidates: GCC keeps the ternary's
  // conditional multiply as a mispredicted branch under -ftrapping-math (about 10x slower on random signs).
  auto grad = [slope](float xi, float dyi) {
    const uint32_t keep_dy = 0u - static_cast<uint32_t>(xi > 0.0f);  // all ones where x > 0
    return bits_f32((f32_bits(dyi) & keep_dy) | (f32_bits(dyi * slope) & ~keep_dy));
  };
  if (mode == GradMode::Accumulate) {
    for (int64_t i = 0; i < n; ++i) dx[i] += grad(x[i], dy[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dx[i] = grad(x[i], dy[i]);
  }
}

}  // namespace dex
