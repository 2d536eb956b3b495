// Click heatmaps (spec §3.9): the erf-integrated 25-tap kernel against the formula in double, single-point maps as
// products of kernel ratios, zero padding at borders, clamping, skipping, overlapping sums, empty -> zeros.
#include <cmath>

#include "data/click_guidance.h"
#include "tests/testing.h"

namespace dex {
namespace {

double g(int x, double sigma = 3) {
  const double t = 1.0 / (sigma * std::sqrt(2.0));
  return 0.5 * (std::erf(t * (x + 0.5)) - std::erf(t * (x - 0.5)));
}

int64_t at(std::array<int, 3> s, int i, int j, int k) { return (int64_t(i) * s[1] + j) * s[2] + k; }

TEST(ClickGuidance, KernelIs25ErfTaps) {
  const auto k = gaussian_kernel_1d(3.f);
  ASSERT_EQ(k.size(), 25u);
  for (int x = -12; x <= 12; ++x) EXPECT_NEAR(k[x + 12], g(x), 2e-7) << x;
  EXPECT_EQ(k[0], k[24]);
  EXPECT_EQ(gaussian_kernel_1d(1.f).size(), 9u);  // tail int(4 + 0.5) = 4
}

TEST(ClickGuidance, SinglePointIsAProductOfKernelRatios) {
  const std::array<int, 3> s{32, 30, 28};
  const auto h = gaussian_heatmap({{16, 15, 14}}, s);
  EXPECT_EQ(h[at(s, 16, 15, 14)], 1.f);
  const double g0 = g(0);
  EXPECT_NEAR(h[at(s, 17, 15, 14)], g(1) / g0, 1e-6);
  EXPECT_NEAR(h[at(s, 13, 17, 17)], g(3) * g(2) * g(3) / (g0 * g0 * g0), 1e-6);
  EXPECT_EQ(h[at(s, 16, 15, 1)], 0.f);  // 13 away: outside the 25 taps
  EXPECT_EQ(h[at(s, 0, 0, 0)], 0.f);
  float mx = 0, mn = 1;
  for (float v : h) mx = std::max(mx, v), mn = std::min(mn, v);
  EXPECT_EQ(mx, 1.f);
  EXPECT_EQ(mn, 0.f);
}

TEST(ClickGuidance, BorderZeroPaddingClampAndSkip) {
  const std::array<int, 3> s{20, 20, 20};
  // Clamped to (19, 5, 0): zero padding -> the neighbour inside is g(1)/g(0), nothing is reflected.
  const auto h = gaussian_heatmap({{40, 5, 0}}, s);
  EXPECT_EQ(h[at(s, 19, 5, 0)], 1.f);
  EXPECT_NEAR(h[at(s, 18, 5, 0)], g(1) / g(0), 1e-6);
  EXPECT_NEAR(h[at(s, 19, 5, 1)], g(1) / g(0), 1e-6);
  // Points with a negative coordinate are skipped; all skipped or none -> exactly zero.
  const auto z = gaussian_heatmap({{-1, 5, 5}, {3, -4, 2}}, s);
  for (float v : z) ASSERT_EQ(v, 0.f);
  const auto e = gaussian_heatmap({}, s);
  for (float v : e) ASSERT_EQ(v, 0.f);
  const auto one = gaussian_heatmap({{-1, 5, 5}, {4, 4, 4}}, s);
  EXPECT_EQ(one[at(s, 4, 4, 4)], 1.f);
}

TEST(ClickGuidance, OverlappingPointsSumBeforeNormalisation) {
  const std::array<int, 3> s{40, 16, 16};
  const auto h = gaussian_heatmap({{10, 8, 8}, {12, 8, 8}}, s);
  const double g0 = g(0);
  const double peak = (g0 + g(2)) * g0 * g0;  // at either point
  const double mid = 2 * g(1) * g0 * g0;       // at (11, 8, 8)
  const double mx = std::max(peak, mid);
  EXPECT_NEAR(h[at(s, 11, 8, 8)], mid / mx, 1e-6);
  EXPECT_NEAR(h[at(s, 10, 8, 8)], peak / mx, 1e-6);
  // Duplicates just set the voxel to 1 again.
  EXPECT_EQ(gaussian_heatmap({{5, 5, 5}, {5, 5, 5}}, s), gaussian_heatmap({{5, 5, 5}}, s));
  // Strided output (one channel of an interleaved tensor) holds the same values.
  std::vector<float> inter(3 * h.size(), -1.f);
  gaussian_heatmap_into({{10, 8, 8}, {12, 8, 8}}, s, inter.data() + 2, 3);
  for (size_t i = 0; i < h.size(); ++i) ASSERT_EQ(inter[3 * i + 2], h[i]);
}

}  // namespace
}  // namespace dex
