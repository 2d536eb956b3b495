// Resizing: "area" = adaptive average pooling (hand-computed windows and a brute-force double reference on
// non-integer ratios, up and down), torch legacy nearest (hand-derived source indices), affine update.
#include <cmath>

#include "data/resize.h"
#include "tests/testing.h"

namespace dex {
namespace {

TEST(Resize, AreaHandComputed) {
  // One axis 3 -> 2: windows [0,2) and [1,3). Other axes 1 -> 1.
  const float in[3] = {1.f, 2.f, 6.f};
  float out[2];
  resize_area(in, {1, 1, 3}, out, {1, 1, 2});
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], 4.f);
  // 2 -> 4 replicates; 2 -> 3 gives windows [0,1) [0,2) [1,2).
  float up[4];
  resize_area(in, {1, 1, 2}, up, {1, 1, 4});
  EXPECT_EQ(up[0], 1.f);
  EXPECT_EQ(up[1], 1.f);
  EXPECT_EQ(up[2], 2.f);
  EXPECT_EQ(up[3], 2.f);
  float up3[3];
  resize_area(in, {1, 1, 2}, up3, {1, 1, 3});
  EXPECT_EQ(up3[0], 1.f);
  EXPECT_EQ(up3[1], 1.5f);
  EXPECT_EQ(up3[2], 2.f);
}

TEST(Resize, AreaMatchesBruteForceOnOddRatios) {
  const Shape3 is{7, 5, 9}, os{3, 8, 4};
  const auto in = testing::random_vector(7 * 5 * 9, 3, -2.f, 2.f);
  std::vector<float> out(3 * 8 * 4);
  resize_area(in.data(), is, out.data(), os);
  std::vector<double> ref(out.size());
  for (int64_t a = 0; a < os[0]; ++a)
    for (int64_t b = 0; b < os[1]; ++b)
      for (int64_t c = 0; c < os[2]; ++c) {
        const int64_t o[3] = {a, b, c};
        int64_t lo[3], hi[3];
        for (int d = 0; d < 3; ++d) {
          lo[d] = static_cast<int64_t>(std::floor(double(o[d]) * is[d] / os[d]));
          hi[d] = static_cast<int64_t>(std::ceil(double(o[d] + 1) * is[d] / os[d]));
        }
        double s = 0;
        int64_t cnt = 0;
        for (int64_t i = lo[0]; i < hi[0]; ++i)
          for (int64_t j = lo[1]; j < hi[1]; ++j)
            for (int64_t k = lo[2]; k < hi[2]; ++k) s += in[(i * is[1] + j) * is[2] + k], ++cnt;
        ref[(a * os[1] + b) * os[2] + c] = s / cnt;
      }
  // float32 sums of at most 3*1*3 = 9 terms in [-2, 2]: error well below 1e-5 absolute.
  const auto r = testing::compare(out.data(), ref.data(), static_cast<int64_t>(out.size()), 0.0, 1e-5, 1e-10);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Resize, NearestLegacyIndices) {
  // 5 -> 3: scale 5/3 as float: 0 -> 0, 1 -> floor(1.667) = 1, 2 -> floor(3.333) = 3.
  const uint8_t in[5] = {10, 11, 12, 13, 14};
  uint8_t out[3];
  resize_nearest(in, {1, 1, 5}, out, {1, 1, 3});
  EXPECT_EQ(out[0], 10);
  EXPECT_EQ(out[1], 11);
  EXPECT_EQ(out[2], 13);
  // 3 -> 7: scale 3/7: 6 -> floor(2.571) = 2; 3 -> floor(1.2857) = 1.
  uint8_t up[7];
  resize_nearest(in, {1, 1, 3}, up, {1, 1, 7});
  const uint8_t want[7] = {10, 10, 10, 11, 11, 12, 12};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(up[i], want[i]) << i;
  // Exact doubling: o >> 1.
  uint8_t d[6];
  resize_nearest(in, {1, 1, 3}, d, {1, 1, 6});
  for (int i = 0; i < 6; ++i) EXPECT_EQ(d[i], in[i >> 1]);
}

TEST(Resize, AffineKeepsTheVolumeCentre) {
  Volume v;
  v.shape = {10, 20, 30};
  v.data.assign(6000, 1.f);
  v.affine[0][0] = -0.8;
  v.affine[1][1] = 0.7;
  v.affine[2][2] = 2.5;
  v.affine[0][3] = 5;
  const Volume r = resize_area(v, {4, 8, 16});
  const auto c_in = mat4_apply(v.affine, {4.5, 9.5, 14.5});
  const auto c_out = mat4_apply(r.affine, {1.5, 3.5, 7.5});
  for (int a = 0; a < 3; ++a) EXPECT_NEAR(c_in[a], c_out[a], 1e-9);
  EXPECT_NEAR(r.affine[0][0], -0.8 * 10 / 4, 1e-12);
  for (float x : r.data) EXPECT_EQ(x, 1.f);
}

}  // namespace
}  // namespace dex
