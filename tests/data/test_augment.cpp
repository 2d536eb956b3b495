// Augmentation (spec §7): exact index maps of flips and rot90 (numpy fixture), affines that keep world coordinates,
// the draw probabilities, and determinism per (seed, epoch, sample).
#include <gtest/gtest.h>

#include "data/augment.h"
#include "tests/testing.h"

namespace dex {
namespace {

Volume ramp(std::array<int64_t, 3> shape) {
  Volume v;
  v.shape = shape;
  v.data.resize(static_cast<size_t>(v.size()));
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = static_cast<float>(i);
  v.affine = mat4_identity();
  v.affine[0][0] = 0.8; v.affine[1][1] = -0.7; v.affine[2][2] = 2.5;
  v.affine[0][3] = -100; v.affine[1][3] = 50; v.affine[2][3] = 10;
  return v;
}

LabelVolume as_label(const Volume& v) {
  LabelVolume l;
  l.shape = v.shape;
  l.affine = v.affine;
  for (float x : v.data) l.data.push_back(static_cast<uint8_t>(x));
  return l;
}

}  // namespace

TEST(Augment, Rot90MatchesNumpy) {
  auto fx = testing::load_fixture(testing::test_data("clicksim/rot90.bin"));
  const auto& in = fx.at("input");
  for (int k = 1; k <= 3; ++k) {
    Volume v;
    v.shape = {in.shape[0], in.shape[1], in.shape[2]};
    v.data = in.f32();
    LabelVolume l = as_label(v);
    AugmentDraw d;
    d.rot90_k = k;
    apply_augment(d, v, l);
    const auto& ref = fx.at("k" + std::to_string(k));
    ASSERT_EQ(v.shape, (std::array<int64_t, 3>{ref.shape[0], ref.shape[1], ref.shape[2]})) << "k " << k;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      ASSERT_EQ(v.data[i], static_cast<float>(ref.data[i])) << "k " << k << " at " << i;
      ASSERT_EQ(l.data[i], static_cast<uint8_t>(ref.data[i])) << "label, k " << k << " at " << i;
    }
  }
}

TEST(Augment, FlipsAndCompositionIndexMaps) {
  const std::array<int64_t, 3> s{3, 4, 5};
  const Volume v0 = ramp(s);
  for (int mask = 0; mask < 8; ++mask)
    for (int k = 0; k < 4; ++k) {
      AugmentDraw d;
      for (int a = 0; a < 3; ++a) d.flip[a] = (mask >> a) & 1;
      d.rot90_k = k;
      Volume v = v0;
      LabelVolume l = as_label(v0);
      apply_augment(d, v, l);
      // Reference by hand: flips first, then numpy rot90 over (0,1).
      auto flipped = [&](int64_t i, int64_t j, int64_t kk) {
        if (d.flip[0]) i = s[0] - 1 - i;
        if (d.flip[1]) j = s[1] - 1 - j;
        if (d.flip[2]) kk = s[2] - 1 - kk;
        return v0.at(i, j, kk);
      };
      const int64_t n0 = s[0], n1 = s[1];
      for (int64_t i = 0; i < v.shape[0]; ++i)
        for (int64_t j = 0; j < v.shape[1]; ++j)
          for (int64_t c = 0; c < v.shape[2]; ++c) {
            float e = 0;
            if (k == 0) e = flipped(i, j, c);
            if (k == 1) e = flipped(j, n1 - 1 - i, c);
            if (k == 2) e = flipped(n0 - 1 - i, n1 - 1 - j, c);
            if (k == 3) e = flipped(n0 - 1 - j, i, c);
            ASSERT_EQ(v.at(i, j, c), e) << "flips " << mask << " k " << k;
            ASSERT_EQ(l.at(i, j, c), static_cast<uint8_t>(e));
          }
      // World coordinates are kept: voxel value at world point p is the same before and after.
      const auto inv = mat4_inverse(v.affine);
      for (int64_t idx : {int64_t{0}, int64_t{7}, int64_t{59}}) {
        const int64_t i = idx / 20, j = (idx / 5) % 4, c = idx % 5;
        const auto w = mat4_apply(v0.affine, {double(i), double(j), double(c)});
        const auto q = mat4_apply(inv, w);
        EXPECT_EQ(v.at(std::llround(q[0]), std::llround(q[1]), std::llround(q[2])), v0.at(i, j, c));
      }
    }
}

TEST(Augment, DrawProbabilitiesAndDeterminism) {
  const int n = 20000;
  int flips[3] = {0, 0, 0}, rot = 0, shift = 0, ks[4] = {0, 0, 0, 0};
  double offset_min = 1, offset_max = -1;
  for (int s = 0; s < n; ++s) {
    Rng rng = augment_rng(123, 7, s);
    const auto d = draw_augment(rng);
    EXPECT_EQ(rng.index(), 7u) << "fixed number of draws";
    for (int a = 0; a < 3; ++a) flips[a] += d.flip[a];
    rot += d.rot90_k != 0;
    ks[d.rot90_k]++;
    shift += d.shift;
    if (d.shift) {
      offset_min = std::min(offset_min, double(d.offset));
      offset_max = std::max(offset_max, double(d.offset));
    } else {
      EXPECT_EQ(d.offset, 0.f);
    }
  }
  // Binomial bounds: 5 standard deviations.
  auto within = [&](int count, double p) { return std::abs(count - n * p) < 5 * std::sqrt(n * p * (1 - p)); };
  for (int a = 0; a < 3; ++a) EXPECT_TRUE(within(flips[a], 0.1)) << "flip " << a << ": " << flips[a];
  EXPECT_TRUE(within(rot, 0.1)) << rot;
  for (int k = 1; k <= 3; ++k) EXPECT_TRUE(std::abs(ks[k] - rot / 3.0) < 5 * std::sqrt(rot * 2.0 / 9)) << ks[k];
  EXPECT_TRUE(within(shift, 0.5)) << shift;
  EXPECT_GE(offset_min, -0.1);
  EXPECT_LE(offset_max, 0.1);
  EXPECT_LT(offset_min, -0.099);
  EXPECT_GT(offset_max, 0.099);
  // Pure function of (seed, epoch, sample).
  Rng a = augment_rng(5, 2, 9), b = augment_rng(5, 2, 9);
  const auto da = draw_augment(a), db = draw_augment(b);
  EXPECT_EQ(da.offset, db.offset);
  EXPECT_EQ(da.rot90_k, db.rot90_k);
  EXPECT_EQ(da.shift, db.shift);
}

TEST(Augment, ShiftAddsOneOffsetWithoutClip) {
  Volume v = ramp({2, 2, 2});
  for (auto& x : v.data) x = x / 7.f;  // [0, 1]
  const Volume v0 = v;
  LabelVolume l = as_label(v0);
  AugmentDraw d;
  d.shift = true;
  d.offset = 0.075f;
  apply_augment(d, v, l);
  for (size_t i = 0; i < v.data.size(); ++i) EXPECT_EQ(v.data[i], v0.data[i] + 0.075f);
  EXPECT_GT(v.data.back(), 1.f) << "no re-clipping";
  EXPECT_EQ(l.data, as_label(v0).data) << "labels are not shifted";
}

}  // namespace dex
