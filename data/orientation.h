// Re-orientation to RAS (MONAI Orientationd(axcodes="RAS")): a pure flip/permutation of the array axes chosen from
// the affine by nibabel's io_orientation rule; the affine is updated so world coordinates are unchanged.
#pragma once
#include <array>
#include <cstdint>

#include "data/volume.h"

namespace dex {

// Output array axis a reads input axis perm[a], reversed when flip[a]:
//   out[n0,n1,n2] = in[m] with m[perm[a]] = flip[a] ? in_shape[perm[a]] - 1 - n[a] : n[a].
struct Orientation {
  int perm[3] = {0, 1, 2};
  bool flip[3] = {false, false, false};

  bool is_identity() const;
  bool permutes() const;  // true if perm is not (0,1,2)
  std::array<int64_t, 3> out_shape(const std::array<int64_t, 3>& in_shape) const;
  // 4x4 map from an output (re-oriented) index to the input index, for input shape in_shape.
  Mat4 out_to_in(const std::array<int64_t, 3>& in_shape) const;
  Orientation inverse() const;  // reorient(reorient(v, o), o.inverse()) == v
};

// nibabel io_orientation (polar decomposition, columns in order, argmax |.| ties -> first) followed by the
// transform to RAS. Throws InputError for a non-invertible 3x3 part or non-finite entries.
Orientation ras_orientation(const Mat4& affine);

// Reorients voxels and sets out.affine = in.affine * out_to_in.
Volume reorient(const Volume& v, const Orientation& o);
LabelVolume reorient(const LabelVolume& v, const Orientation& o);
// Raw C-order buffer version (one channel).
template <class T>
void reorient_buffer(const T* in, const std::array<int64_t, 3>& in_shape, const Orientation& o, T* out);

}  // namespace dex
