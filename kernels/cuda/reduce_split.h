// The chunking and combination math of the split (whole-GPU) reductions of instance_norm.cu, bias_add.cu and
// dice_ce.cu, as plain functions callable from host and device: the kernels call them, and tests/cuda/
// test_reduce_split.cpp checks them on the CPU against long double references. No CUDA headers needed.
//
// Split scheme: the voxels of each sample are cut into a FIXED number of chunks, a function of the problem only (never
// of the device), so results are the same on every GPU. Pass 1: one block per (chunk, channel group, sample) writes
// per-channel partial sums (double) to a workspace; pass 2: one thread per channel adds the partials in chunk order
// (deterministic, no atomics); pass 3 (norm only) applies the result over all chunks in parallel.
//
// Instance-norm statistics are single-pass shifted sums in double: d = x - K with K = the sample's first voxel of the
// channel, s1 = sum d, s2 = sum d^2, mean = K + s1/S, var = s2/S - (s1/S)^2. Why this is accurate for 2M voxels:
// the products d*d are formed in double from fp32 values (relative error 2^-53), the sums of S terms carry at most
// ~(S/rows + rows + chunks) * 2^-53 relative error (per-thread runs of chunk/32 terms, then 32 rows, then the chunks),
// ~1e-13 at 2M voxels; the cancellation in s2/S - m^2 amplifies that by 1 + (mean - K)^2 / var, and K being one sample
// of the channel keeps (mean - K)^2 / var small (a few units) even when mean / std is huge (unshifted sum/sumsq would
// lose (mean/std)^2 of it: 1e6 at mean/std = 1e3, still ~1e-7). The result is rounded to fp32 (2^-24 ~ 6e-8), so the
// double error is invisible. fp32 (count, mean, M2) Welford partials would carry ~2^-24 * log2(S) per combine level,
// visible at the fp32 output; the v1 kernel's exact two passes read x once more.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DEX_SPLIT_HD __host__ __device__ __forceinline__
#else
#define DEX_SPLIT_HD inline
#endif

namespace dex {
namespace split {

// Blocks a split launch aims for: ~2 waves of 2 resident 1024-thread blocks on a 132-SM H100 (a fixed number, not
// queried from the device, so the summation order never depends on the GPU).
constexpr int64_t kTargetBlocks = 528;
// Fewest voxels per chunk: a 32-row block then reads >= 8 voxels per thread before its reduction.
constexpr int64_t kMinChunk = 256;
// Most chunks (bounds the workspace and pass 2's serial loop).
constexpr int64_t kMaxChunks = 1024;

struct Plan {
  int64_t chunk_len = 1;  // voxels per chunk (the last one may be shorter: ragged)
  int chunks = 1;
};

// The plan for `S` voxels when `other_blocks` blocks (channel groups x samples) already run side by side.
DEX_SPLIT_HD Plan make_plan(int64_t S, int64_t other_blocks) {
  if (other_blocks < 1) other_blocks = 1;
  int64_t want = (kTargetBlocks + other_blocks - 1) / other_blocks;
  const int64_t most = (S + kMinChunk - 1) / kMinChunk;
  if (want > most) want = most;
  if (want > kMaxChunks) want = kMaxChunks;
  if (want < 1) want = 1;
  Plan p;
  p.chunk_len = (S + want - 1) / want;
  if (p.chunk_len < 1) p.chunk_len = 1;
  p.chunks = static_cast<int>((S + p.chunk_len - 1) / p.chunk_len);  // no empty chunk
  if (p.chunks < 1) p.chunks = 1;
  return p;
}

// Voxel range [begin, end) of chunk k.
DEX_SPLIT_HD void chunk_range(const Plan& p, int64_t S, int k, int64_t* begin, int64_t* end) {
  *begin = int64_t(k) * p.chunk_len;
  const int64_t e = *begin + p.chunk_len;
  *end = e < S ? e : S;
}

// Mean and rstd from the combined shifted sums (s1 = sum (x - K), s2 = sum (x - K)^2 over S voxels); biased variance
// as the reference, clamped at 0 against rounding.
DEX_SPLIT_HD void norm_stats(int64_t S, double K, double s1, double s2, double eps, double* mean, double* rstd) {
  const double m = s1 / double(S);
  double var = s2 / double(S) - m * m;
  if (var < 0) var = 0;
  *mean = K + m;
  *rstd = 1.0 / sqrt(var + eps);
}

// Host emulation of the kernels' summation order for one channel `c` of a [S][C] sample, `rows` rows per block
// (row r of chunk k takes voxels begin + r, begin + r + rows, ...; rows summed in ascending order, then chunks in
// ascending order). value(v) gives the (widened) element at voxel v. Used by the CPU tests.
template <class F>
void shifted_sums_split(const Plan& p, int64_t S, int rows, double K, F value, double* s1, double* s2) {
  double t1 = 0, t2 = 0;
  for (int k = 0; k < p.chunks; ++k) {
    int64_t b, e;
    chunk_range(p, S, k, &b, &e);
    double c1 = 0, c2 = 0;
    for (int r = 0; r < rows; ++r) {
      double a1 = 0, a2 = 0;
      for (int64_t v = b + r; v < e; v += rows) {
        const double d = double(value(v)) - K;
        a1 += d;
        a2 += d * d;
      }
      c1 += a1;
      c2 += a2;
    }
    t1 += c1;
    t2 += c2;
  }
  *s1 = t1;
  *s2 = t2;
}

}  // namespace split
}  // namespace dex
