// The way back on the GPU (issue 8, spec §5): the network's 2-channel output [D][H][W][2] (NDHWC, fp32) on the
// spatial_size grid -> uint8 mask (and optionally the fp32 spleen probability) in the INPUT file's geometry, in one
// pass written directly in file order. It computes exactly what data/preprocess.cpp postprocess_logits does:
//   1. softmax over the 2 channels in fp32 (max subtracted, expf, e / (e0 + e1)) (skipped for probabilities);
//   2. area resize (adaptive average pooling, data/resize.cpp) of each channel from the grid to the oriented shape:
//      oriented index o on an axis (grid n, oriented m) averages grid [floor(o*n/m), ceil((o+1)*n/m)), the fp32 sum
//      taken over the box in axis 0, 1, 2 nesting order from 0.f, then divided by l0, by l1, by l2 in that order
//      (a window of length 1 divides by 1: exact, so this is also the CPU's single-row fast path);
//   3. the inverse orientation folded into the indexing: file voxel f reads oriented voxel
//      o[perm[a]] = flip[a] ? oriented[perm[a]] - 1 - f[a] : f[a]  (perm/flip of Orientation::inverse(), the
//      convention of data/orientation.h reorient_buffer);
//   4. argmax over (background, spleen) with ties to background: mask = p_spleen > p_background.
// Every value is the same float operation sequence as the CPU's, so the CPU reference below (way_back_cpu) equals
// postprocess_logits bit for bit; the CUDA kernel differs only where expf differs by an ulp between the device and
// glibc (near-ties of the mask).
//
// The index math is __host__ __device__ (DEX_HD) so the CPU tests exercise the very functions the kernel runs.
// way_back_cuda() exists where dex_cuda is built (infer/way_back_cuda.cu); this header needs no CUDA headers.
#pragma once
#include <cmath>
#include <cstdint>

#include "data/clicks.h"
#include "kernels/common.h"  // DEX_HD

namespace dex {

// Everything the way back needs, as plain values (passed to the kernel by value).
struct WayBackGeometry {
  int64_t grid[3] = {0, 0, 0};      // network grid (spatial_size), RAS-oriented axes
  int64_t oriented[3] = {0, 0, 0};  // the oriented original shape
  int64_t file[3] = {0, 0, 0};      // the file's shape (output), file[a] = oriented[perm[a]]
  int perm[3] = {0, 1, 2};          // the inverse orientation: file axis a reads oriented axis perm[a] ...
  bool flip[3] = {false, false, false};  // ... reversed when flip[a]
  // The same map seen from the oriented side (what the kernel indexes with constants, no local-memory arrays):
  // oriented axis b is file axis from[b], reversed when from_flip[b].
  int from[3] = {0, 1, 2};
  bool from_flip[3] = {false, false, false};
  int64_t file_voxels() const { return file[0] * file[1] * file[2]; }
  int64_t grid_voxels() const { return grid[0] * grid[1] * grid[2]; }
};

// From the preprocessing record (host only). Throws dex::Error when the record is inconsistent.
inline WayBackGeometry make_way_back_geometry(const GridGeometry& g) {
  WayBackGeometry w;
  const Orientation inv = g.orientation.inverse();
  for (int a = 0; a < 3; ++a) {
    w.grid[a] = g.spatial_size[a];
    w.oriented[a] = g.oriented_shape[a];
    w.perm[a] = inv.perm[a];
    w.flip[a] = inv.flip[a];
  }
  for (int a = 0; a < 3; ++a) {
    w.from[w.perm[a]] = a;
    w.from_flip[w.perm[a]] = w.flip[a];
  }
  for (int a = 0; a < 3; ++a) {
    w.file[a] = w.oriented[w.perm[a]];
    DEX_CHECK(w.grid[a] > 0 && w.oriented[a] > 0, "way back: grid ", w.grid[a], " and oriented extent ",
              w.oriented[a], " on axis ", a, " must be positive");
    DEX_CHECK(w.file[a] == g.file_shape[a], "way back: the record's file shape (", g.file_shape[a], " on axis ", a,
              ") is not its oriented shape under the inverse orientation (", w.file[a], ")");
  }
  return w;
}

// Area window of output index o on an axis resized from n to m: [*start, *start + *len). Exact integer math; in
// 32 bits when it fits (always, for medical volumes: the GPU's 64-bit division is a long software sequence), else in
// 64 bits: both give the same integers.
DEX_HD inline void way_back_area_window(int64_t o, int64_t n, int64_t m, int64_t* start, int64_t* len) {
  const int64_t hi = (o + 1) * n + m - 1;
  if (hi <= 0x7fffffff) {
    const uint32_t s = uint32_t(o) * uint32_t(n) / uint32_t(m), e = uint32_t(hi) / uint32_t(m);
    *start = s;
    *len = int64_t(e) - int64_t(s);
  } else {
    const int64_t s = (o * n) / m;
    *start = s;
    *len = hi / m - s;
  }
}

// Oriented index on oriented axis b of file voxel (f0, f1, f2).
DEX_HD inline int64_t way_back_oriented_index(const WayBackGeometry& g, int b, int64_t f0, int64_t f1, int64_t f2) {
  const int a = g.from[b];
  const int64_t f = a == 0 ? f0 : (a == 1 ? f1 : f2);
  return g.from_flip[b] ? g.oriented[b] - 1 - f : f;
}

// File voxel (f0, f1, f2) -> oriented voxel o[3].
DEX_HD inline void way_back_file_to_oriented(const WayBackGeometry& g, int64_t f0, int64_t f1, int64_t f2,
                                             int64_t* o) {
  o[0] = way_back_oriented_index(g, 0, f0, f1, f2);
  o[1] = way_back_oriented_index(g, 1, f0, f1, f2);
  o[2] = way_back_oriented_index(g, 2, f0, f1, f2);
}

// 2-channel softmax in fp32, as postprocess_logits: max subtracted, expf, divided by the sum.
DEX_HD inline void way_back_softmax2(float z0, float z1, float* p0, float* p1) {
  const float mx = z0 < z1 ? z1 : z0;  // std::max(z0, z1), NaN handling included
  const float e0 = expf(z0 - mx), e1 = expf(z1 - mx);
  const float sum = e0 + e1;
  *p0 = e0 / sum;
  *p1 = e1 / sum;
}

// Background and spleen probabilities of one file voxel. `in`: [grid voxels][2] NDHWC, logits (softmax applied
// per grid voxel here) or probabilities.
DEX_HD inline void way_back_voxel(const WayBackGeometry& g, const float* in, bool from_logits, int64_t f0, int64_t f1,
                                  int64_t f2, float* p_bg, float* p_fg) {
  int64_t s0, l0, s1, l1, s2, l2;  // scalars, not arrays: registers on the GPU
  way_back_area_window(way_back_oriented_index(g, 0, f0, f1, f2), g.grid[0], g.oriented[0], &s0, &l0);
  way_back_area_window(way_back_oriented_index(g, 1, f0, f1, f2), g.grid[1], g.oriented[1], &s1, &l1);
  way_back_area_window(way_back_oriented_index(g, 2, f0, f1, f2), g.grid[2], g.oriented[2], &s2, &l2);
  float sum0 = 0.f, sum1 = 0.f;
  for (int64_t i0 = s0; i0 < s0 + l0; ++i0)
    for (int64_t i1 = s1; i1 < s1 + l1; ++i1)
      for (int64_t i2 = s2; i2 < s2 + l2; ++i2) {
        const float* z = in + 2 * ((i0 * g.grid[1] + i1) * g.grid[2] + i2);
        float q0 = z[0], q1 = z[1];
        if (from_logits) way_back_softmax2(z[0], z[1], &q0, &q1);
        sum0 += q0;
        sum1 += q1;
      }
  *p_bg = sum0 / static_cast<float>(l0) / static_cast<float>(l1) / static_cast<float>(l2);
  *p_fg = sum1 / static_cast<float>(l0) / static_cast<float>(l1) / static_cast<float>(l2);
}

// The CPU reference of the fused way back (tests): mask[file voxels] (uint8 0/1) and, when prob is not null, the
// spleen probability, both in file (C) order.
inline void way_back_cpu(const WayBackGeometry& g, const float* in, bool from_logits, uint8_t* mask, float* prob) {
  for (int64_t f0 = 0; f0 < g.file[0]; ++f0)
    for (int64_t f1 = 0; f1 < g.file[1]; ++f1)
      for (int64_t f2 = 0; f2 < g.file[2]; ++f2) {
        float bg, fg;
        way_back_voxel(g, in, from_logits, f0, f1, f2, &bg, &fg);
        const int64_t i = (f0 * g.file[1] + f1) * g.file[2] + f2;
        mask[i] = fg > bg ? 1 : 0;
        if (prob) prob[i] = fg;
      }
}

// The same on the GPU (infer/way_back_cuda.cu, where dex_cuda is built): `in` on the device ([grid voxels][2],
// fp32), `mask` (file voxels) and `prob` (file voxels, or null) on the device; `stream` is a cudaStream_t
// (nullptr: the default stream). Asynchronous; throws dex::Error on bad arguments or a launch error.
void way_back_cuda(const WayBackGeometry& g, const float* in, bool from_logits, uint8_t* mask, float* prob,
                   void* stream);

}  // namespace dex
