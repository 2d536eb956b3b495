// bias_add (output head): bit-exact forward parity with PyTorch fp32, dbias against float64 torch autograd,
// accumulation, finite differences, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/elementwise.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

TEST(bias_add, fwd_and_bwd_match_pytorch) {
  auto fx = testing::load_fixture(testing::test_data("ops/bias_add.bin"));
  std::vector<float> y = fx.at("x").f32(), bias = fx.at("bias").f32(), dy = fx.at("dy").f32();
  const int C = static_cast<int>(bias.size());
  const int64_t voxels = static_cast<int64_t>(y.size()) / C;
  bias_add_fwd_cpu(voxels, C, bias.data(), y.data());
  testing::check_close("bias_add y", y.data(), fx.at("y").data.data(), voxels * C, 0, 0, 0);
  // dbias: a sum of `voxels` terms accumulated in double, rounded once: rtol = 2u, atol = 2u * sum|dy| / voxels
  std::vector<float> dbias(C, 0.f);
  bias_add_bwd_cpu(voxels, C, dy.data(), dbias.data());
  double abs_mean = 0;
  for (float v : dy) abs_mean += std::fabs(v) / voxels;
  const double rtol = 2 * testing::kUnitF32;
  testing::check_close("bias_add dbias", dbias.data(), fx.at("dbias").data.data(), C, rtol, rtol * abs_mean,
                       4 * rtol * rtol);
  // dbias accumulates: a second call doubles it (exactly: x + x is exact)
  std::vector<float> once = dbias;
  bias_add_bwd_cpu(voxels, C, dy.data(), dbias.data());
  for (int c = 0; c < C; ++c) EXPECT_EQ(dbias[c], 2 * once[c]);
}

TEST(bias_add, backward_matches_finite_differences) {
  const int64_t voxels = 30;
  const int C = 3;
  std::vector<float> x = testing::random_vector(voxels * C, 61), bias = testing::random_vector(C, 62),
                     w = testing::random_vector(voxels * C, 63), db(C, 0.f);
  testing::grid_inputs(x), testing::grid_inputs(bias);
  bias_add_bwd_cpu(voxels, C, w.data(), db.data());
  auto fwd = [&](const std::vector<float>& b) {
    std::vector<float> y = x;
    bias_add_fwd_cpu(voxels, C, b.data(), y.data());
    return std::vector<double>(y.begin(), y.end());
  };
  EXPECT_GRADCHECK_NAMED(dex::str("bias_add d", "bias"), testing::gradcheck(bias, fwd, w, db, std::ldexp(1.0, -7), 1e-6));
}

TEST(bias_add, bad_input_throws) {
  float v[4] = {};
  EXPECT_THROW(bias_add_fwd_cpu(2, 0, v, v), Error);
  EXPECT_THROW(bias_add_fwd_cpu(-1, 2, v, v), Error);
  EXPECT_THROW(bias_add_fwd_cpu(2, 2, nullptr, v), Error);
  EXPECT_THROW(bias_add_bwd_cpu(2, 2, v, nullptr), Error);
}

}  // namespace
}  // namespace dex
