// add (residual connections): bit-exact parity with PyTorch's fp32 add, gradient routing and GradMode,
// finite differences, bad input.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/elementwise.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

TEST(add, fwd_matches_pytorch_bit_exactly_and_may_alias) {
  auto fx = testing::load_fixture(testing::test_data("ops/add.bin"));
  std::vector<float> a = fx.at("a").f32(), b = fx.at("b").f32();
  const int64_t n = static_cast<int64_t>(a.size());
  std::vector<float> y(n);
  add_fwd_cpu(n, a.data(), b.data(), y.data());
  testing::check_close("add y", y.data(), fx.at("y").data.data(), n, 0, 0, 0);
  add_fwd_cpu(n, a.data(), b.data(), a.data());  // y aliases a
  EXPECT_EQ(a, y);
}

TEST(add, bwd_routes_dy_to_both_inputs_per_grad_mode) {
  const int64_t n = 33;
  std::vector<float> dy = testing::random_vector(n, 51), da(n, 7.f), db(n, 0.25f);
  add_bwd_cpu(n, dy.data(), da.data(), nullptr);  // db not wanted
  EXPECT_EQ(da, dy);
  add_bwd_cpu(n, dy.data(), da.data(), db.data(), GradMode::Accumulate);  // fan-out: both accumulate
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(da[i], dy[i] + dy[i]);
    EXPECT_EQ(db[i], 0.25f + dy[i]);
  }
}

TEST(add, backward_matches_finite_differences) {
  const int64_t n = 40;
  std::vector<float> a = testing::random_vector(n, 52), b = testing::random_vector(n, 53), w = testing::random_vector(n, 54);
  testing::grid_inputs(a), testing::grid_inputs(b);
  std::vector<float> da(n), db(n);
  add_bwd_cpu(n, w.data(), da.data(), db.data());
  auto run = [&](const std::vector<float>& aa, const std::vector<float>& bb) {
    std::vector<float> y(n);
    add_fwd_cpu(n, aa.data(), bb.data(), y.data());
    return std::vector<double>(y.begin(), y.end());
  };
  const double h = std::ldexp(1.0, -7);
  EXPECT_GRADCHECK_NAMED(dex::str("add d", "a"), testing::gradcheck(a, [&](const std::vector<float>& v) { return run(v, b); }, w, da, h, 1e-6));
  EXPECT_GRADCHECK_NAMED(dex::str("add d", "b"), testing::gradcheck(b, [&](const std::vector<float>& v) { return run(a, v); }, w, db, h, 1e-6));
}

TEST(add, bad_input_throws) {
  float v = 1;
  EXPECT_THROW(add_fwd_cpu(-3, &v, &v, &v), Error);
  EXPECT_THROW(add_fwd_cpu(1, &v, nullptr, &v), Error);
  EXPECT_THROW(add_bwd_cpu(1, nullptr, &v, &v), Error);
}

}  // namespace
}  // namespace dex
