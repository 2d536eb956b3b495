// Chessboard distance transform vs scipy.ndimage.distance_transform_cdt (fixtures: scripts/gen_fixtures_clicksim.py).
#include <gtest/gtest.h>

#include "data/distance_transform.h"
#include "tests/testing.h"

namespace dex {

namespace {

std::vector<uint8_t> as_u8(const testing::FixtureTensor& t) { return std::vector<uint8_t>(t.data.begin(), t.data.end()); }

void expect_equal(const std::vector<int32_t>& got, const testing::FixtureTensor& ref, const std::string& what) {
  ASSERT_EQ(static_cast<int64_t>(got.size()), ref.numel()) << what;
  int64_t mismatches = 0, first = -1;
  for (int64_t i = 0; i < ref.numel(); ++i)
    if (got[i] != static_cast<int32_t>(ref.data[i]) && mismatches++ == 0) first = i;
  EXPECT_EQ(mismatches, 0) << what << ": first mismatch at " << first << ": got " << got[first] << ", scipy "
                           << ref.data[first];
}

}  // namespace

TEST(DistanceTransform, Matches2dScipy) {
  auto fx = testing::load_fixture(testing::test_data("clicksim/cdt.bin"));
  int cases = 0;
  for (const char* name : {"random_sparse", "random_dense", "blobs", "full", "empty", "border", "single_out", "line"}) {
    const auto& m = fx.at(std::string("2d/") + name + "/mask");
    auto d = distance_transform_cdt_2d(as_u8(m).data(), m.shape[0], m.shape[1]);
    expect_equal(d, fx.at(std::string("2d/") + name + "/dist"), name);
    ++cases;
  }
  EXPECT_EQ(cases, 8);
}

TEST(DistanceTransform, Matches3dScipy) {
  auto fx = testing::load_fixture(testing::test_data("clicksim/cdt.bin"));
  for (const char* name : {"random", "blobs", "full", "empty", "border", "single_out"}) {
    const auto& m = fx.at(std::string("3d/") + name + "/mask");
    auto d = distance_transform_cdt_3d(as_u8(m).data(), {m.shape[0], m.shape[1], m.shape[2]});
    expect_equal(d, fx.at(std::string("3d/") + name + "/dist"), name);
  }
}

// Analytic cases: a cube of side 2r+1 around the single outside voxel's complement, and the border rule.
TEST(DistanceTransform, AnalyticCases) {
  // One outside voxel at the centre of a 9^3 cube: distance = chessboard norm of the offset.
  const int64_t n = 9, c = 4;
  std::vector<uint8_t> m(n * n * n, 1);
  m[(c * n + c) * n + c] = 0;
  auto d = distance_transform_cdt_3d(m.data(), {n, n, n});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < n; ++k) {
        int64_t e = std::max({std::abs(i - c), std::abs(j - c), std::abs(k - c)});
        ASSERT_EQ(d[(i * n + j) * n + k], e) << i << "," << j << "," << k;
      }
  // The border is not outside: a row [1 1 1 0] gives [3 2 1 0].
  std::vector<uint8_t> row{1, 1, 1, 0};
  auto r = distance_transform_cdt_2d(row.data(), 1, 4);
  EXPECT_EQ(r, (std::vector<int32_t>{3, 2, 1, 0}));
  // All inside: -1 everywhere (scipy's convention).
  std::vector<uint8_t> full(12, 1);
  auto f = distance_transform_cdt_2d(full.data(), 3, 4);
  for (int32_t v : f) EXPECT_EQ(v, -1);
}

// Linear time: a 128^3 transform (the network grid) is one pass pair; guards against an accidental brute force.
TEST(DistanceTransform, NetworkGridSize) {
  const int64_t n = 128;
  std::vector<uint8_t> m(n * n * n, 1);
  m[0] = 0;  // one outside voxel at a corner: distance = max(i,j,k)
  auto d = distance_transform_cdt_3d(m.data(), {n, n, n});
  EXPECT_EQ(d[(n * n * n) - 1], n - 1);
  EXPECT_EQ(d[(5 * n + 70) * n + 3], 70);
}

}  // namespace dex
