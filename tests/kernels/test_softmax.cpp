// Softmax over channels: parity with float64 torch on the same fp32 inputs (forward and autograd backward),
// analytic sanity (rows sum to 1, no overflow on huge logits), finite differences, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/elementwise.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

using testing::kUnitF32;

class SoftmaxParity : public ::testing::TestWithParam<const char*> {};

TEST_P(SoftmaxParity, softmax_fwd_and_bwd_match_pytorch) {
  const std::string k = GetParam();
  auto fx = testing::load_fixture(testing::test_data("ops/softmax.bin"));
  std::vector<float> x = fx.at(k + ".x").f32(), dy = fx.at(k + ".dy").f32();
  const int C = static_cast<int>(fx.at(k + ".x").shape.back());
  const int64_t n = static_cast<int64_t>(x.size()), voxels = n / C;
  std::vector<float> y(n), dx(n);
  softmax_fwd_cpu(voxels, C, x.data(), y.data());
  // computed in double, rounded once: rtol 2u; atol covers the NMSE of tiny probabilities
  const double rtol = 2 * kUnitF32;
  testing::check_close("softmax " + k + " y", y.data(), fx.at(k + ".y").data.data(), n, rtol, 0, 4 * rtol * rtol);
  // dx = y*(dy - sum y*dy) from the fp32 y (relative error u) and a double dot product (error <= u*max|dy|
  // through y): |err| <= 3u*|dx| + 2u*|y|*max|dy| <= rtol*|dx| + atol with atol = 2u*max|dy|.
  softmax_bwd_cpu(voxels, C, y.data(), dy.data(), dx.data());
  double max_dy = 0;
  for (float v : dy) max_dy = std::max(max_dy, std::fabs(static_cast<double>(v)));
  testing::check_close("softmax " + k + " dx", dx.data(), fx.at(k + ".dx").data.data(), n, 3 * kUnitF32,
                       2 * kUnitF32 * max_dy, 16 * kUnitF32 * kUnitF32);
}
INSTANTIATE_TEST_SUITE_P(ops, SoftmaxParity, ::testing::Values("c2", "c5"));

TEST(softmax, rows_sum_to_one_and_huge_logits_do_not_overflow) {
  const int C = 4;
  std::vector<float> x = {1e4f, -1e4f, 1e4f, 0.f,   // two equal maxima far above the rest
                          -3.f, -3.f, -3.f, -3.f,   // uniform
                          88.f, 89.f, 90.f, 91.f};  // exp(91) overflows fp32 without the max shift
  std::vector<float> y(x.size());
  softmax_fwd_cpu(3, C, x.data(), x.data());  // in place
  y = x;
  EXPECT_EQ(y[0], 0.5f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 0.5f);
  for (int c = 0; c < C; ++c) EXPECT_EQ(y[4 + c], 0.25f);
  for (int v = 0; v < 3; ++v) {
    double s = 0;
    for (int c = 0; c < C; ++c) {
      EXPECT_TRUE(std::isfinite(y[v * C + c]));
      s += y[v * C + c];
    }
    EXPECT_NEAR(s, 1.0, C * kUnitF32);
  }
}

TEST(softmax, backward_matches_finite_differences) {
  const int C = 3;
  const int64_t voxels = 10;
  std::vector<float> x = testing::random_vector(voxels * C, 81, -3.f, 3.f), w = testing::random_vector(voxels * C, 82),
                     y(x.size()), dx(x.size());
  testing::grid_inputs(x);
  softmax_fwd_cpu(voxels, C, x.data(), y.data());
  softmax_bwd_cpu(voxels, C, y.data(), w.data(), dx.data());
  auto fwd = [&](const std::vector<float>& v) {
    std::vector<float> out(v.size());
    softmax_fwd_cpu(voxels, C, v.data(), out.data());
    return std::vector<double>(out.begin(), out.end());
  };
  EXPECT_GRADCHECK_NAMED(dex::str("softmax d", "x"), testing::gradcheck(x, fwd, w, dx, std::ldexp(1.0, -6), 1e-5));
}

TEST(softmax, bad_input_throws) {
  float v[4] = {};
  EXPECT_THROW(softmax_fwd_cpu(1, 0, v, v), Error);
  EXPECT_THROW(softmax_fwd_cpu(-1, 2, v, v), Error);
  EXPECT_THROW(softmax_fwd_cpu(2, 2, nullptr, v), Error);
  EXPECT_THROW(softmax_bwd_cpu(2, 2, v, nullptr, v), Error);
}

}  // namespace
}  // namespace dex
