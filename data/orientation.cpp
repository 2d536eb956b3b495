#include "data/orientation.h"

#include <cmath>

#include "kernels/common.h"

namespace dex {

bool Orientation::is_identity() const {
  for (int a = 0; a < 3; ++a)
    if (perm[a] != a || flip[a]) return false;
  return true;
}

bool Orientation::permutes() const { return perm[0] != 0 || perm[1] != 1 || perm[2] != 2; }

std::array<int64_t, 3> Orientation::out_shape(const std::array<int64_t, 3>& in_shape) const {
  return {in_shape[perm[0]], in_shape[perm[1]], in_shape[perm[2]]};
}

Mat4 Orientation::out_to_in(const std::array<int64_t, 3>& in_shape) const {
  Mat4 m{};
  m[3][3] = 1;
  for (int a = 0; a < 3; ++a) {
    m[perm[a]][a] = flip[a] ? -1.0 : 1.0;
    m[perm[a]][3] = flip[a] ? static_cast<double>(in_shape[perm[a]] - 1) : 0.0;
  }
  return m;
}

Orientation Orientation::inverse() const {
  Orientation r;
  for (int a = 0; a < 3; ++a) {
    r.perm[perm[a]] = a;
    r.flip[perm[a]] = flip[a];
  }
  return r;
}

namespace {

using Mat3 = std::array<std::array<double, 3>, 3>;

bool inverse3(const Mat3& a, Mat3& r) {
  const double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
                     a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                     a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
  if (!std::isfinite(det) || std::fabs(det) < 1e-12) return false;
  r[0][0] = (a[1][1] * a[2][2] - a[1][2] * a[2][1]) / det;
  r[0][1] = (a[0][2] * a[2][1] - a[0][1] * a[2][2]) / det;
  r[0][2] = (a[0][1] * a[1][2] - a[0][2] * a[1][1]) / det;
  r[1][0] = (a[1][2] * a[2][0] - a[1][0] * a[2][2]) / det;
  r[1][1] = (a[0][0] * a[2][2] - a[0][2] * a[2][0]) / det;
  r[1][2] = (a[0][2] * a[1][0] - a[0][0] * a[1][2]) / det;
  r[2][0] = (a[1][0] * a[2][1] - a[1][1] * a[2][0]) / det;
  r[2][1] = (a[0][1] * a[2][0] - a[0][0] * a[2][1]) / det;
  r[2][2] = (a[0][0] * a[1][1] - a[0][1] * a[1][0]) / det;
  return true;
}

// Orthogonal polar factor of a non-singular matrix (= U V^T of its SVD, what nibabel computes) by Newton's iteration
// X <- (X + X^-T) / 2.
Mat3 polar_orthogonal(Mat3 x) {
  for (int it = 0; it < 100; ++it) {
    Mat3 inv;
    if (!inverse3(x, inv)) throw InputError("affine: the rotation/zoom part is not invertible, cannot orient");
    double change = 0;
    Mat3 n;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        n[i][j] = 0.5 * (x[i][j] + inv[j][i]);
        change = std::max(change, std::fabs(n[i][j] - x[i][j]));
      }
    x = n;
    if (change < 1e-15) break;
  }
  return x;
}

}  // namespace

Orientation ras_orientation(const Mat4& affine) {
  Mat3 rs;
  for (int j = 0; j < 3; ++j) {
    double zoom = 0;
    for (int i = 0; i < 3; ++i) {
      DEX_INPUT_CHECK(std::isfinite(affine[i][j]), "affine has a non-finite entry, cannot orient");
      zoom += affine[i][j] * affine[i][j];
    }
    zoom = std::sqrt(zoom);
    if (zoom == 0) zoom = 1;
    for (int i = 0; i < 3; ++i) rs[i][j] = affine[i][j] / zoom;
  }
  Mat3 r = polar_orthogonal(rs);
  // nibabel io_orientation: input axes in order; the world axis is argmax |column| (first on ties); that world
  // axis's row is then zeroed so no later axis can take it.
  Orientation o;
  bool used[3] = {false, false, false};
  for (int in_ax = 0; in_ax < 3; ++in_ax) {
    int out_ax = -1;
    double best = -1;
    bool all_zero = true;
    for (int i = 0; i < 3; ++i) {
      if (std::fabs(r[i][in_ax]) > 1e-8) all_zero = false;
      if (std::fabs(r[i][in_ax]) > best) {
        best = std::fabs(r[i][in_ax]);
        out_ax = i;
      }
    }
    DEX_INPUT_CHECK(!all_zero && !used[out_ax], "affine is too oblique to assign array axis ", in_ax,
                    " to a world axis");
    used[out_ax] = true;
    o.perm[out_ax] = in_ax;
    o.flip[out_ax] = r[out_ax][in_ax] < 0;
    for (int j = 0; j < 3; ++j) r[out_ax][j] = 0;
  }
  return o;
}

template <class T>
void reorient_buffer(const T* in, const std::array<int64_t, 3>& in_shape, const Orientation& o, T* out) {
  const int64_t in_stride[3] = {in_shape[1] * in_shape[2], in_shape[2], 1};
  const auto os = o.out_shape(in_shape);
  int64_t base = 0, step[3];
  for (int a = 0; a < 3; ++a) {
    const int64_t s = in_stride[o.perm[a]];
    step[a] = o.flip[a] ? -s : s;
    if (o.flip[a]) base += (in_shape[o.perm[a]] - 1) * s;
  }
  for (int64_t n0 = 0; n0 < os[0]; ++n0) {
    const int64_t b0 = base + n0 * step[0];
    for (int64_t n1 = 0; n1 < os[1]; ++n1) {
      const T* src = in + b0 + n1 * step[1];
      T* dst = out + (n0 * os[1] + n1) * os[2];
      const int64_t s2 = step[2];
      for (int64_t n2 = 0; n2 < os[2]; ++n2) dst[n2] = src[n2 * s2];
    }
  }
}
template void reorient_buffer<float>(const float*, const std::array<int64_t, 3>&, const Orientation&, float*);
template void reorient_buffer<uint8_t>(const uint8_t*, const std::array<int64_t, 3>&, const Orientation&, uint8_t*);

namespace {
template <class T>
VolumeT<T> reorient_impl(const VolumeT<T>& v, const Orientation& o) {
  DEX_CHECK(static_cast<int64_t>(v.data.size()) == v.size(), "reorient: data size does not match the shape");
  VolumeT<T> r;
  r.shape = o.out_shape(v.shape);
  r.affine = mat4_mul(v.affine, o.out_to_in(v.shape));
  r.data.resize(v.data.size());
  reorient_buffer(v.data.data(), v.shape, o, r.data.data());
  return r;
}
}  // namespace

Volume reorient(const Volume& v, const Orientation& o) { return reorient_impl(v, o); }
LabelVolume reorient(const LabelVolume& v, const Orientation& o) { return reorient_impl(v, o); }

}  // namespace dex
