// A 3D image in memory: voxels in C order over the array axes (axis 2 fastest), i.e. voxel (i,j,k) of a
// NIfTI file (i = first stored axis) is at ((i*ny + j)*nz + k). This is the order of MONAI's numpy/torch
// arrays and of the network's NDHWC tensors (D,H,W = array axes 0,1,2), so no layer ever transposes.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace dex {

using Mat4 = std::array<std::array<double, 4>, 4>;  // row-major 4x4, voxel index -> world (RAS, mm)
Mat4 mat4_identity();
Mat4 mat4_mul(const Mat4& a, const Mat4& b);
Mat4 mat4_inverse(const Mat4& a);  // throws dex::Error if singular
std::array<double, 3> mat4_apply(const Mat4& a, const std::array<double, 3>& p);

template <class T>
struct VolumeT {
  std::array<int64_t, 3> shape{0, 0, 0};
  Mat4 affine = mat4_identity();
  std::vector<T> data;

  int64_t size() const { return shape[0] * shape[1] * shape[2]; }
  int64_t index(int64_t i, int64_t j, int64_t k) const { return (i * shape[1] + j) * shape[2] + k; }
  T& at(int64_t i, int64_t j, int64_t k) { return data[index(i, j, k)]; }
  const T& at(int64_t i, int64_t j, int64_t k) const { return data[index(i, j, k)]; }
};
using Volume = VolumeT<float>;       // CT intensities, probabilities
using LabelVolume = VolumeT<uint8_t>;  // label maps

}  // namespace dex
