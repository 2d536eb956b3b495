// LeakyReLU: bit-exact parity with PyTorch's fp32 F.leaky_relu (one multiply) forward and backward, x == 0
// taking the slope in the backward, finite differences away from the kink, GradMode, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/elementwise.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

TEST(leaky_relu, fwd_and_bwd_match_pytorch_bit_exactly) {
  auto fx = testing::load_fixture(testing::test_data("ops/leaky_relu.bin"));
  std::vector<float> x = fx.at("x").f32(), dy = fx.at("dy").f32();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> y(n), dx(n);
  leaky_relu_fwd_cpu(n, 0.01f, x.data(), y.data());
  testing::check_close("leaky_relu y", y.data(), fx.at("y").data.data(), n, 0, 0, 0);
  leaky_relu_bwd_cpu(n, 0.01f, x.data(), dy.data(), dx.data());
  testing::check_close("leaky_relu dx", dx.data(), fx.at("dx").data.data(), n, 0, 0, 0);
  EXPECT_EQ(x[0], 0.0f);  // the fixture holds exact zeros: dx = slope*dy there
  EXPECT_EQ(dx[0], dy[0] * 0.01f);
}

// The forward's max(x, slope*x) form and the backward's bit select must equal the definition bit for bit, signed zeros and specials included,
// and the other slopes (0: -inf*0 is NaN; > 1; < 0) take the plain definition.
TEST(leaky_relu, fwd_and_bwd_equal_the_definition_bit_for_bit_on_special_values) {
  const float inf = INFINITY, tiny = std::ldexp(1.0f, -149);
  std::vector<float> x = {0.f, -0.f, tiny, -tiny, -1e-40f, inf, -inf, std::nanf(""), -std::nanf(""), 3.5f, -3.5f};
  for (float slope : {0.01f, 0.0f, 1.0f, 2.5f, -0.5f}) {
    std::vector<float> y(x.size());
    leaky_relu_fwd_cpu(static_cast<int64_t>(x.size()), slope, x.data(), y.data());
    for (size_t i = 0; i < x.size(); ++i) {
      const float ref = x[i] > 0.0f ? x[i] : x[i] * slope;
      if (std::isnan(ref)) {
        EXPECT_TRUE(std::isnan(y[i])) << "slope " << slope << " x " << x[i];
      } else {
        EXPECT_EQ(std::signbit(y[i]), std::signbit(ref)) << "slope " << slope << " x " << x[i];
        EXPECT_EQ(y[i], ref) << "slope " << slope << " x " << x[i];
      }
    }
    // the backward's branch-free select against the definition, with special gradients too
    std::vector<float> dy = {1.5f, -0.f, inf, -inf, 2.f, -1.f, std::nanf(""), 3.f, 0.f, -tiny, 7.f};
    std::vector<float> dx(x.size());
    leaky_relu_bwd_cpu(static_cast<int64_t>(x.size()), slope, x.data(), dy.data(), dx.data());
    for (size_t i = 0; i < x.size(); ++i) {
      const float ref = x[i] > 0.0f ? dy[i] : dy[i] * slope;
      if (std::isnan(ref)) {
        EXPECT_TRUE(std::isnan(dx[i])) << "slope " << slope << " x " << x[i] << " dy " << dy[i];
      } else {
        EXPECT_EQ(std::signbit(dx[i]), std::signbit(ref)) << "slope " << slope << " x " << x[i] << " dy " << dy[i];
        EXPECT_EQ(dx[i], ref) << "slope " << slope << " x " << x[i] << " dy " << dy[i];
      }
    }
  }
}

TEST(leaky_relu, in_place_and_grad_modes) {
  const int64_t n = 50;
  std::vector<float> x = testing::random_vector(n, 41, -2.f, 2.f), y(n), inplace = x;
  leaky_relu_fwd_cpu(n, 0.01f, x.data(), y.data());
  leaky_relu_fwd_cpu(n, 0.01f, inplace.data(), inplace.data());
  EXPECT_EQ(y, inplace);
  // the backward may be given the output instead of the input (same sign for slope > 0)
  std::vector<float> dy = testing::random_vector(n, 42), dx_x(n), dx_y(n), acc(n, 0.5f);
  leaky_relu_bwd_cpu(n, 0.01f, x.data(), dy.data(), dx_x.data());
  leaky_relu_bwd_cpu(n, 0.01f, y.data(), dy.data(), dx_y.data());
  EXPECT_EQ(dx_x, dx_y);
  leaky_relu_bwd_cpu(n, 0.01f, x.data(), dy.data(), acc.data(), GradMode::Accumulate);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(acc[i], 0.5f + dx_x[i]) << i;
}

TEST(leaky_relu, backward_matches_finite_differences) {
  const int64_t n = 60;
  std::vector<float> x = testing::random_vector(n, 43, -1.f, 1.f), w = testing::random_vector(n, 44);
  testing::away_from_zero(x, 0.05f);  // |x| >= 0.05 > 2h: the stencil never crosses the kink
  testing::grid_inputs(x);
  std::vector<float> y(n), dx(n);
  leaky_relu_bwd_cpu(n, 0.01f, x.data(), w.data(), dx.data());
  auto fwd = [&](const std::vector<float>& v) {
    std::vector<float> out(n);
    leaky_relu_fwd_cpu(n, 0.01f, v.data(), out.data());
    return std::vector<double>(out.begin(), out.end());
  };
  EXPECT_GRADCHECK_NAMED(dex::str("leaky_relu d", "x"), testing::gradcheck(x, fwd, w, dx, std::ldexp(1.0, -7), 1e-6));
}

TEST(leaky_relu, bad_input_throws) {
  float a = 1, b = 0;
  EXPECT_THROW(leaky_relu_fwd_cpu(-1, 0.01f, &a, &b), Error);
  EXPECT_THROW(leaky_relu_fwd_cpu(1, 0.01f, nullptr, &b), Error);
  EXPECT_THROW(leaky_relu_bwd_cpu(1, 0.01f, &a, nullptr, &b), Error);
  EXPECT_NO_THROW(leaky_relu_fwd_cpu(0, 0.01f, nullptr, nullptr));  // empty is fine
}

}  // namespace
}  // namespace dex
