// Re-orientation to RAS: nibabel's io_orientation rule on hand-derived affines, world coordinates preserved (checked
// by brute force through the affines), and the exact inverse for all 48 flip/permutation combinations.
#include <cmath>

#include "data/orientation.h"
#include "tests/testing.h"

namespace dex {
namespace {

Volume random_volume(std::array<int64_t, 3> shape, uint64_t seed) {
  Volume v;
  v.shape = shape;
  v.data = testing::random_vector(v.size(), seed);
  return v;
}

TEST(Orientation, FlipOnlyAffine) {
  Mat4 a = mat4_identity();
  a[0][0] = -0.8;
  a[1][1] = -0.8;
  a[2][2] = 2.5;
  const Orientation o = ras_orientation(a);
  EXPECT_FALSE(o.permutes());
  EXPECT_TRUE(o.flip[0]);
  EXPECT_TRUE(o.flip[1]);
  EXPECT_FALSE(o.flip[2]);
  EXPECT_TRUE(ras_orientation(mat4_identity()).is_identity());
}

TEST(Orientation, ObliqueAffinesPickTheDominantAxisInColumnOrder) {
  // Rotation by 60 degrees about z: column 0 = (0.5, 0.866, 0) -> A (+); column 1 = (-0.866, 0.5, 0) -> R (-).
  const double c = std::cos(M_PI / 3), s = std::sin(M_PI / 3);
  Mat4 a = mat4_identity();
  a[0][0] = c; a[0][1] = -s;
  a[1][0] = s; a[1][1] = c;
  Orientation o = ras_orientation(a);
  EXPECT_EQ(o.perm[0], 1);
  EXPECT_EQ(o.perm[1], 0);
  EXPECT_EQ(o.perm[2], 2);
  EXPECT_TRUE(o.flip[0]);
  EXPECT_FALSE(o.flip[1]);
  // 30 degrees: no permutation, no flip; anisotropic zooms do not change that.
  a = mat4_identity();
  a[0][0] = 3 * std::cos(M_PI / 6); a[0][1] = -0.5 * std::sin(M_PI / 6);
  a[1][0] = 3 * std::sin(M_PI / 6); a[1][1] = 0.5 * std::cos(M_PI / 6);
  EXPECT_TRUE(ras_orientation(a).is_identity());
  Mat4 bad = mat4_identity();
  bad[2][2] = NAN;
  EXPECT_THROW(ras_orientation(bad), InputError);
}

TEST(Orientation, PermutedAffineKeepsWorldCoordinates) {
  // Array axes (z, x, y) with x flipped: column 0 -> S, column 1 -> -R, column 2 -> A.
  Mat4 a{};
  a[2][0] = 3.0;
  a[0][1] = -0.9;
  a[1][2] = 0.9;
  a[0][3] = 40; a[1][3] = -30; a[2][3] = 12; a[3][3] = 1;
  Volume v = random_volume({5, 6, 7}, 11);
  v.affine = a;
  const Orientation o = ras_orientation(a);
  EXPECT_TRUE(o.permutes());
  const Volume r = reorient(v, o);
  EXPECT_EQ(r.shape, (std::array<int64_t, 3>{6, 7, 5}));
  // The re-oriented affine is RAS-aligned with positive diagonal.
  EXPECT_GT(r.affine[0][0], 0);
  EXPECT_GT(r.affine[1][1], 0);
  EXPECT_GT(r.affine[2][2], 0);
  // Brute force: every input voxel's world point, mapped into the output grid, holds the same value.
  const Mat4 to_out = mat4_inverse(r.affine);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 6; ++j)
      for (int64_t k = 0; k < 7; ++k) {
        const auto w = mat4_apply(a, {double(i), double(j), double(k)});
        const auto q = mat4_apply(to_out, w);
        const int64_t n0 = std::llround(q[0]), n1 = std::llround(q[1]), n2 = std::llround(q[2]);
        ASSERT_NEAR(q[0], n0, 1e-9);
        ASSERT_EQ(r.at(n0, n1, n2), v.at(i, j, k));
      }
  EXPECT_TRUE(ras_orientation(r.affine).is_identity());
}

TEST(Orientation, InverseIsExactForAll48Orientations) {
  const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  Volume v = random_volume({4, 5, 6}, 7);
  v.affine[0][3] = 3;
  LabelVolume l;
  l.shape = v.shape;
  for (int64_t i = 0; i < v.size(); ++i) l.data.push_back(static_cast<uint8_t>(i * 37 % 251));
  for (const auto& p : perms)
    for (int f = 0; f < 8; ++f) {
      Orientation o;
      for (int a = 0; a < 3; ++a) {
        o.perm[a] = p[a];
        o.flip[a] = (f >> a) & 1;
      }
      const Volume r = reorient(v, o);
      const Volume back = reorient(r, o.inverse());
      ASSERT_EQ(back.shape, v.shape);
      ASSERT_EQ(back.data, v.data);
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) ASSERT_NEAR(back.affine[i][j], v.affine[i][j], 1e-12);
      ASSERT_EQ(reorient(reorient(l, o), o.inverse()).data, l.data);
      // The orientation found from the re-oriented affine undoes o (up to RAS), i.e. brings it back to v's grid.
      const Orientation found = ras_orientation(r.affine);
      ASSERT_EQ(reorient(r, found).data, v.data);
    }
}

}  // namespace
}  // namespace dex
