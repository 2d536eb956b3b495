// Channel concat / split: bit-exact parity with torch.cat and its autograd split, GradMode, null gradients,
// finite differences, bad input.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/elementwise.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

TEST(concat, fwd_and_bwd_match_pytorch_bit_exactly) {
  auto fx = testing::load_fixture(testing::test_data("ops/concat.bin"));
  std::vector<float> a = fx.at("a").f32(), b = fx.at("b").f32(), dy = fx.at("dy").f32();
  const int Ca = static_cast<int>(fx.at("a").shape.back()), Cb = static_cast<int>(fx.at("b").shape.back());
  const int64_t voxels = static_cast<int64_t>(a.size()) / Ca;
  std::vector<float> y(voxels * (Ca + Cb)), da(a.size()), db(b.size());
  concat_fwd_cpu(voxels, Ca, Cb, a.data(), b.data(), y.data());
  testing::check_close("concat y", y.data(), fx.at("y").data.data(), static_cast<int64_t>(y.size()), 0, 0, 0);
  concat_bwd_cpu(voxels, Ca, Cb, dy.data(), da.data(), db.data());
  testing::check_close("concat da", da.data(), fx.at("da").data.data(), static_cast<int64_t>(da.size()), 0, 0, 0);
  testing::check_close("concat db", db.data(), fx.at("db").data.data(), static_cast<int64_t>(db.size()), 0, 0, 0);
}

TEST(concat, bwd_grad_modes_and_null_outputs) {
  const int64_t voxels = 7;
  const int Ca = 2, Cb = 3;
  std::vector<float> dy = testing::random_vector(voxels * 5, 71), da(voxels * Ca, 1.f), db(voxels * Cb, -2.f);
  concat_bwd_cpu(voxels, Ca, Cb, dy.data(), da.data(), nullptr, GradMode::Accumulate);
  for (int64_t v = 0; v < voxels; ++v)
    for (int c = 0; c < Ca; ++c) EXPECT_EQ(da[v * Ca + c], 1.f + dy[v * 5 + c]);
  concat_bwd_cpu(voxels, Ca, Cb, dy.data(), nullptr, db.data());
  for (int64_t v = 0; v < voxels; ++v)
    for (int c = 0; c < Cb; ++c) EXPECT_EQ(db[v * Cb + c], dy[v * 5 + Ca + c]);
}

TEST(concat, backward_matches_finite_differences) {
  const int64_t voxels = 6;
  const int Ca = 2, Cb = 3;
  std::vector<float> a = testing::random_vector(voxels * Ca, 72), b = testing::random_vector(voxels * Cb, 73),
                     w = testing::random_vector(voxels * (Ca + Cb), 74), da(a.size()), db(b.size());
  testing::grid_inputs(a), testing::grid_inputs(b);
  concat_bwd_cpu(voxels, Ca, Cb, w.data(), da.data(), db.data());
  auto run = [&](const std::vector<float>& aa, const std::vector<float>& bb) {
    std::vector<float> y(voxels * (Ca + Cb));
    concat_fwd_cpu(voxels, Ca, Cb, aa.data(), bb.data(), y.data());
    return std::vector<double>(y.begin(), y.end());
  };
  const double h = std::ldexp(1.0, -7);
  EXPECT_GRADCHECK_NAMED(dex::str("concat d", "a"), testing::gradcheck(a, [&](const std::vector<float>& v) { return run(v, b); }, w, da, h, 1e-6));
  EXPECT_GRADCHECK_NAMED(dex::str("concat d", "b"), testing::gradcheck(b, [&](const std::vector<float>& v) { return run(a, v); }, w, db, h, 1e-6));
}

TEST(concat, bad_input_throws) {
  float v[8] = {};
  EXPECT_THROW(concat_fwd_cpu(1, -1, 2, v, v, v), Error);
  EXPECT_THROW(concat_fwd_cpu(1, 0, 0, v, v, v), Error);
  EXPECT_THROW(concat_fwd_cpu(1, 2, 2, nullptr, v, v), Error);
  EXPECT_THROW(concat_bwd_cpu(1, 2, 2, nullptr, v, v), Error);
}

}  // namespace
}  // namespace dex
