#include "data/volume.h"

#include <cmath>
#include "kernels/common.h"

namespace dex {

Mat4 mat4_identity() {
  Mat4 m{};
  for (int i = 0; i < 4; ++i) m[i][i] = 1.0;
  return m;
}

Mat4 mat4_mul(const Mat4& a, const Mat4& b) {
  Mat4 r{};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      double s = 0;
      for (int k = 0; k < 4; ++k) s += a[i][k] * b[k][j];
      r[i][j] = s;
    }
  return r;
}

Mat4 mat4_inverse(const Mat4& a) {
  // Gauss-Jordan with partial pivoting.
  double m[4][8];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) m[i][j] = j < 4 ? a[i][j] : (j - 4 == i ? 1.0 : 0.0);
  double scale = 0;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) scale = std::max(scale, std::fabs(a[i][j]));
  for (int c = 0; c < 4; ++c) {
    int piv = c;
    for (int r = c + 1; r < 4; ++r)
      if (std::fabs(m[r][c]) > std::fabs(m[piv][c])) piv = r;
    DEX_CHECK(std::fabs(m[piv][c]) > 1e-12 * (scale > 0 ? scale : 1.0), "matrix is singular (not invertible)");
    if (piv != c)
      for (int j = 0; j < 8; ++j) std::swap(m[c][j], m[piv][j]);
    double d = m[c][c];
    for (int j = 0; j < 8; ++j) m[c][j] /= d;
    for (int r = 0; r < 4; ++r) {
      if (r == c) continue;
      double f = m[r][c];
      if (f != 0)
        for (int j = 0; j < 8; ++j) m[r][j] -= f * m[c][j];
    }
  }
  Mat4 r{};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) r[i][j] = m[i][j + 4];
  return r;
}

std::array<double, 3> mat4_apply(const Mat4& a, const std::array<double, 3>& p) {
  std::array<double, 3> r{};
  for (int i = 0; i < 3; ++i) r[i] = a[i][0] * p[0] + a[i][1] * p[1] + a[i][2] * p[2] + a[i][3];
  return r;
}

}  // namespace dex
