// The way in on the GPU (the Segmenter's set_image on CUDA): the file's voxels (uploaded once, file order) -> the
// network input's CT channel on the grid, in one pass. It computes exactly what data/preprocess.cpp
// preprocess_image does on the CPU:
//   1. orientation to RAS folded into the indexing: oriented voxel o reads file voxel m[perm[b]] = flip[b] ?
//      file[perm[b]] - 1 - o[b] : o[b] (data/orientation.h reorient_buffer);
//   2. the intensity window of data/intensity.cpp, the same fp32 operations in the same order (no fused
//      multiply-add on the GPU: explicit round-to-nearest multiply and add);
//   3. area resize to the grid (data/resize.cpp): the fp32 sum over the window box in axis 0, 1, 2 nesting order
//      from 0.f, divided by l0, l1, l2 in that order.
// So the CPU reference below (preprocess_ct_cpu) and the kernel both equal preprocess_image's CT bit for bit.
// make_preprocess_record builds the record (geometry for the clicks and the way back) without touching voxels.
// preprocess_ct_cuda exists where dex_cuda is built (infer/preprocess_cuda.cu); no CUDA headers here.
#pragma once
#include <cstdint>

#include "data/preprocess.h"
#include "infer/way_back_cuda.h"  // DEX_HD, way_back_area_window
#include "kernels/common.h"

namespace dex {

struct PreprocessGeometry {
  int64_t grid[3] = {0, 0, 0};      // output (spatial_size), oriented axes
  int64_t oriented[3] = {0, 0, 0};  // oriented shape
  int64_t file[3] = {0, 0, 0};      // file shape (input)
  int perm[3] = {0, 1, 2};          // oriented axis b reads file axis perm[b] ...
  bool flip[3] = {false, false, false};  // ... reversed when flip[b]
  // Derived (what the kernel indexes with constants): oriented axis b's file stride and extent.
  int64_t stride[3] = {0, 0, 0}, extent[3] = {0, 0, 0};
  float a_min = -175.f, range = 425.f, out_range = 1.f, b_min = 0.f, lo = 0.f, hi = 1.f;  // the window's constants
  int64_t grid_voxels() const { return grid[0] * grid[1] * grid[2]; }
  int64_t file_voxels() const { return file[0] * file[1] * file[2]; }
};

// The record preprocess_image would return for a volume of this shape and affine (same checks, same errors).
inline PreprocessRecord make_preprocess_record(const std::array<int64_t, 3>& file_shape, const Mat4& file_affine,
                                               const PreprocessOptions& opt) {
  for (int a = 0; a < 3; ++a) {
    DEX_CHECK(file_shape[a] > 0, "preprocess: the image has a zero or negative extent on axis ", a);
    DEX_INPUT_CHECK(opt.spatial_size[a] > 0 && opt.spatial_size[a] <= 4096, "spatial_size must be in [1, 4096], got ",
                    opt.spatial_size[a]);
  }
  PreprocessRecord r;
  GridGeometry& g = r.geometry;
  g.file_shape = file_shape;
  g.file_affine = file_affine;
  g.orientation = ras_orientation(file_affine);
  g.spatial_size = opt.spatial_size;
  g.oriented_shape = g.orientation.out_shape(file_shape);
  g.oriented_affine = mat4_mul(file_affine, g.orientation.out_to_in(file_shape));
  r.options = opt;
  return r;
}

inline PreprocessGeometry make_preprocess_geometry(const PreprocessRecord& rec) {
  const PreprocessOptions& o = rec.options;
  DEX_INPUT_CHECK(o.a_max != o.a_min, "intensity window: a_min and a_max must differ (both ", o.a_min, ")");
  PreprocessGeometry p;
  for (int a = 0; a < 3; ++a) {
    p.grid[a] = rec.geometry.spatial_size[a];
    p.oriented[a] = rec.geometry.oriented_shape[a];
    p.file[a] = rec.geometry.file_shape[a];
    p.perm[a] = rec.geometry.orientation.perm[a];
    p.flip[a] = rec.geometry.orientation.flip[a];
  }
  const int64_t fstride[3] = {p.file[1] * p.file[2], p.file[2], 1};
  for (int b = 0; b < 3; ++b) {
    p.stride[b] = fstride[p.perm[b]];
    p.extent[b] = p.file[p.perm[b]];
  }
  p.a_min = o.a_min;
  p.range = o.a_max - o.a_min;
  p.out_range = o.b_max - o.b_min;
  p.b_min = o.b_min;
  p.lo = o.b_min < o.b_max ? o.b_min : o.b_max;  // std::min / std::max of data/intensity.cpp
  p.hi = o.b_max < o.b_min ? o.b_min : o.b_max;
  return p;
}

// fp32 multiply and add, never contracted into a fused multiply-add (nvcc contracts by default).
DEX_HD inline float preprocess_mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DEX_HD inline float preprocess_add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// data/intensity.cpp's window of one voxel: t = (x - a_min) / range; t = t * out_range + b_min; clamp to [lo, hi]
// with std::max then std::min (NaN stays NaN).
DEX_HD inline float preprocess_window(const PreprocessGeometry& p, float x) {
  float t = (x - p.a_min) / p.range;
  t = preprocess_add_rn(preprocess_mul_rn(t, p.out_range), p.b_min);
  t = t < p.lo ? p.lo : t;
  return p.hi < t ? p.hi : t;
}

// File index along the file axis that oriented axis b reads, for oriented index o.
DEX_HD inline int64_t preprocess_file_index(const PreprocessGeometry& p, int b, int64_t o) {
  return p.flip[b] ? p.extent[b] - 1 - o : o;
}

// The CT channel of grid voxel (g0, g1, g2) from the file's voxels (C order over file[]).
DEX_HD inline float preprocess_voxel(const PreprocessGeometry& p, const float* file, int64_t g0, int64_t g1,
                                     int64_t g2) {
  int64_t s0, l0, s1, l1, s2, l2;
  way_back_area_window(g0, p.oriented[0], p.grid[0], &s0, &l0);
  way_back_area_window(g1, p.oriented[1], p.grid[1], &s1, &l1);
  way_back_area_window(g2, p.oriented[2], p.grid[2], &s2, &l2);
  const int64_t st0 = p.stride[0], st1 = p.stride[1], st2 = p.stride[2];
  float sum = 0.f;
  for (int64_t i0 = s0; i0 < s0 + l0; ++i0) {
    const int64_t b0 = preprocess_file_index(p, 0, i0) * st0;
    for (int64_t i1 = s1; i1 < s1 + l1; ++i1) {
      const int64_t b1 = b0 + preprocess_file_index(p, 1, i1) * st1;
      for (int64_t i2 = s2; i2 < s2 + l2; ++i2)
        sum += preprocess_window(p, file[b1 + preprocess_file_index(p, 2, i2) * st2]);
    }
  }
  return sum / static_cast<float>(l0) / static_cast<float>(l1) / static_cast<float>(l2);
}

// CPU reference (tests): out[grid voxel * C + c] for every grid voxel.
inline void preprocess_ct_cpu(const PreprocessGeometry& p, const float* file, float* out, int C, int c) {
  for (int64_t g0 = 0; g0 < p.grid[0]; ++g0)
    for (int64_t g1 = 0; g1 < p.grid[1]; ++g1)
      for (int64_t g2 = 0; g2 < p.grid[2]; ++g2)
        out[((g0 * p.grid[1] + g1) * p.grid[2] + g2) * C + c] = preprocess_voxel(p, file, g0, g1, g2);
}

// The same on the GPU: `file` (file voxels, fp32) and `out` ([grid voxels][C], channel c written) on the device;
// `stream` a cudaStream_t (nullptr: default). Asynchronous.
void preprocess_ct_cuda(const PreprocessGeometry& p, const float* file, float* out, int C, int c, void* stream);

}  // namespace dex
