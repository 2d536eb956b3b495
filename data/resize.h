// Resizing as torch.nn.functional.interpolate does it (spec §3.7, §7).
//  area    = adaptive average pooling per axis: output o on an axis n -> m averages input [floor(o*n/m), ceil((o+1)*n/m)).
//  nearest = PyTorch legacy nearest: src = min(floor(dst * (n/m)), n - 1), scale computed in float32 like torch.
#pragma once
#include <array>
#include <cstdint>

#include "data/volume.h"

namespace dex {

using Shape3 = std::array<int64_t, 3>;

// Raw single-channel C-order buffers.
void resize_area(const float* in, const Shape3& in_shape, float* out, const Shape3& out_shape);
template <class T>
void resize_nearest(const T* in, const Shape3& in_shape, T* out, const Shape3& out_shape);

// Volumes: the affine is scaled like MONAI's Resize (centered: new index o -> old o*s + (s-1)/2, s = n/m).
Volume resize_area(const Volume& v, const Shape3& out_shape);
Volume resize_nearest(const Volume& v, const Shape3& out_shape);
LabelVolume resize_nearest(const LabelVolume& v, const Shape3& out_shape);
Mat4 resize_affine(const Mat4& affine, const Shape3& in_shape, const Shape3& out_shape);

}  // namespace dex
