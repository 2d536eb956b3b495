#include "data/resize.h"

#include <cmath>
#include <vector>

#include "kernels/common.h"

namespace dex {
namespace {

void check_shapes(const Shape3& in, const Shape3& out) {
  for (int a = 0; a < 3; ++a) {
    DEX_CHECK(in[a] > 0, "resize: input shape has a zero or negative extent on axis ", a);
    DEX_CHECK(out[a] > 0, "resize: output shape has a zero or negative extent on axis ", a);
  }
}

// Adaptive pooling windows of one axis: [floor(o*n/m), ceil((o+1)*n/m)), exact integer arithmetic.
void area_windows(int64_t n, int64_t m, std::vector<int64_t>& start, std::vector<int64_t>& len) {
  start.resize(m);
  len.resize(m);
  for (int64_t o = 0; o < m; ++o) {
    const int64_t s = (o * n) / m;
    const int64_t e = ((o + 1) * n + m - 1) / m;
    start[o] = s;
    len[o] = e - s;
  }
}

// torch legacy nearest: identity when equal sizes, >>1 for exact doubling, else min(floor(o * float(n/m)), n-1).
std::vector<int64_t> nearest_src(int64_t n, int64_t m) {
  std::vector<int64_t> src(m);
  const float scale = static_cast<float>(n) / static_cast<float>(m);
  for (int64_t o = 0; o < m; ++o) {
    if (n == m) src[o] = o;
    else if (m == 2 * n) src[o] = o >> 1;
    else src[o] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(o) * scale)), n - 1);
  }
  return src;
}

}  // namespace

void resize_area(const float* in, const Shape3& is, float* out, const Shape3& os) {
  check_shapes(is, os);
  std::vector<int64_t> s0, l0, s1, l1, s2, l2;
  area_windows(is[0], os[0], s0, l0);
  area_windows(is[1], os[1], s1, l1);
  area_windows(is[2], os[2], s2, l2);
  // As torch's adaptive_avg_pool3d: float sum over the box (axis 0, 1, 2 nesting), then / k0 / k1 / k2.
  // Fast path, bit-identical: when the axis-0/1 windows are single rows (up-sampling, e.g. the way back to the file
  // grid) the sum is over one row only; dividing by a window length of 1 is skipped (x / 1 == x).
  for (int64_t o0 = 0; o0 < os[0]; ++o0)
    for (int64_t o1 = 0; o1 < os[1]; ++o1) {
      float* dst = out + (o0 * os[1] + o1) * os[2];
      const float d01_0 = static_cast<float>(l0[o0]), d01_1 = static_cast<float>(l1[o1]);
      if (l0[o0] == 1 && l1[o1] == 1) {
        const float* row = in + (s0[o0] * is[1] + s1[o1]) * is[2];
        for (int64_t o2 = 0; o2 < os[2]; ++o2) {
          const float* p = row + s2[o2];
          if (l2[o2] == 1) {
            dst[o2] = p[0];
          } else {
            float sum = 0.f;
            for (int64_t i2 = 0; i2 < l2[o2]; ++i2) sum += p[i2];
            dst[o2] = sum / static_cast<float>(l2[o2]);
          }
        }
        continue;
      }
      for (int64_t o2 = 0; o2 < os[2]; ++o2) {
        float sum = 0.f;
        for (int64_t i0 = s0[o0]; i0 < s0[o0] + l0[o0]; ++i0)
          for (int64_t i1 = s1[o1]; i1 < s1[o1] + l1[o1]; ++i1) {
            const float* row = in + (i0 * is[1] + i1) * is[2];
            for (int64_t i2 = s2[o2]; i2 < s2[o2] + l2[o2]; ++i2) sum += row[i2];
          }
        dst[o2] = sum / d01_0 / d01_1 / static_cast<float>(l2[o2]);
      }
    }
}

template <class T>
void resize_nearest(const T* in, const Shape3& is, T* out, const Shape3& os) {
  check_shapes(is, os);
  const auto src0 = nearest_src(is[0], os[0]), src1 = nearest_src(is[1], os[1]), src2 = nearest_src(is[2], os[2]);
  for (int64_t o0 = 0; o0 < os[0]; ++o0)
    for (int64_t o1 = 0; o1 < os[1]; ++o1) {
      const T* row = in + (src0[o0] * is[1] + src1[o1]) * is[2];
      T* dst = out + (o0 * os[1] + o1) * os[2];
      for (int64_t o2 = 0; o2 < os[2]; ++o2) dst[o2] = row[src2[o2]];
    }
}
template void resize_nearest<float>(const float*, const Shape3&, float*, const Shape3&);
template void resize_nearest<uint8_t>(const uint8_t*, const Shape3&, uint8_t*, const Shape3&);

Mat4 resize_affine(const Mat4& affine, const Shape3& in_shape, const Shape3& out_shape) {
  Mat4 s = mat4_identity();
  bool same = true;
  for (int a = 0; a < 3; ++a) {
    const double scale = static_cast<double>(in_shape[a]) / static_cast<double>(out_shape[a]);
    s[a][a] = scale;
    s[a][3] = (scale - 1.0) / 2.0;
    same = same && in_shape[a] == out_shape[a];
  }
  return same ? affine : mat4_mul(affine, s);
}

Volume resize_area(const Volume& v, const Shape3& out_shape) {
  DEX_CHECK(static_cast<int64_t>(v.data.size()) == v.size(), "resize_area: data size does not match the shape");
  Volume r;
  r.shape = out_shape;
  r.affine = resize_affine(v.affine, v.shape, out_shape);
  r.data.resize(static_cast<size_t>(r.size()));
  resize_area(v.data.data(), v.shape, r.data.data(), out_shape);
  return r;
}

namespace {
template <class T>
VolumeT<T> resize_nearest_impl(const VolumeT<T>& v, const Shape3& out_shape) {
  DEX_CHECK(static_cast<int64_t>(v.data.size()) == v.size(), "resize_nearest: data size does not match the shape");
  VolumeT<T> r;
  r.shape = out_shape;
  r.affine = resize_affine(v.affine, v.shape, out_shape);
  r.data.resize(static_cast<size_t>(r.size()));
  resize_nearest(v.data.data(), v.shape, r.data.data(), out_shape);
  return r;
}
}  // namespace

Volume resize_nearest(const Volume& v, const Shape3& out_shape) { return resize_nearest_impl(v, out_shape); }
LabelVolume resize_nearest(const LabelVolume& v, const Shape3& out_shape) { return resize_nearest_impl(v, out_shape); }

}  // namespace dex
