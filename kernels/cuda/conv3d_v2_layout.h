// Index maps of conv3d_fprop_kernel_v2 (conv3d.cu) as plain host+device functions, so the CPU test
// tests/cuda/test_conv3d_v2_layout.cpp can emulate the kernel (cp.async tile fill, swizzle, ldmatrix, mma.m16n8k16
// fragments, epilogue) against the PTX ISA fragment tables without a GPU (KERNELS.md §7).
#pragma once
#include "kernels/common.h"

namespace dex::v2 {

constexpr int kBM = 128;     // output voxels per CTA
constexpr int kBK = 32;      // channels per k-step (one tap)
constexpr int kStages = 3;   // cp.async ring depth
constexpr int kThreads = 128;

// Halves offset of (row, 16-byte chunk) in a [rows][32 halves] smem tile. chunk ^= (row/2)%4 puts any 8 consecutive
// rows' same chunk in 8 distinct 16-byte slots of a 128-byte line (conflict-free ldmatrix phases).
DEX_HD inline int swz(int row, int chunk) { return row * kBK + ((chunk ^ ((row >> 1) & 3)) << 3); }

// k-step kt covers tap kt / (C/32) and channels [c0, c0 + 32).
DEX_HD inline void kstep(int kt, int C, int* tap, int* c0) {
  const int cc = C / kBK;
  *tap = kt / cc;
  *c0 = (kt - *tap * cc) * kBK;
}

// A tile loads: thread tid copies 16-byte chunk a_chunk(tid) of rows a_row(tid, i), i < 4.
DEX_HD inline int a_row(int tid, int i) { return (tid >> 2) + 32 * i; }
DEX_HD inline int a_chunk(int tid) { return tid & 3; }
// B tile loads: thread tid copies chunk b_chunk(idx) of weight row b_row(idx), idx = tid + 128 j, j < BN / 32.
DEX_HD inline int b_row(int idx) { return idx >> 2; }
DEX_HD inline int b_chunk(int idx) { return idx & 3; }

// ldmatrix.x4 addresses (lane supplies row `row` of matrix lane/8). A: m16k16 tile mi of warp rows warp_m, k16 half kk.
DEX_HD inline int lda_row(int warp_m, int mi, int lane) { return warp_m + mi * 16 + (lane & 15); }
DEX_HD inline int lda_chunk(int kk, int lane) { return kk * 2 + (lane >> 4); }
// B: n16 pair nj (two n8 tiles), k16 half kk; result regs 0,1 -> n8 tile 2nj (b0b1, b2b3), regs 2,3 -> tile 2nj+1.
DEX_HD inline int ldb_row(int nj, int lane) { return nj * 16 + (lane & 7) + ((lane >> 4) << 3); }
DEX_HD inline int ldb_chunk(int kk, int lane) { return kk * 2 + ((lane >> 3) & 1); }

// Accumulator element q (0..3) of lane in tile (mi, ni): row within the CTA tile and column within the BN tile.
DEX_HD inline int acc_row(int warp_m, int mi, int lane, int q) { return warp_m + mi * 16 + (lane >> 2) + (q >> 1) * 8; }
DEX_HD inline int acc_col(int ni, int lane, int q) { return ni * 8 + (lane & 3) * 2 + (q & 1); }

}  // namespace dex::v2

namespace dex::v2 {
// Transposed conv with kernel == stride as one GEMM (KERNELS.md §3): A row m = input voxel m (N*D*H*W, C channels),
// B row col = weight row (k, tap) = w[k][tap][:] (col = k * taps + tap), K-dim = C. Output element (m, col) goes to
// voxel (n, i*s0 + a, j*s1 + b, l*s2 + c) channel k, where m = ((n*D + i)*H + j)*W + l and tap = (a*KH + b)*KW + c.
// Windows never overlap, so every output element is written exactly once.
DEX_HD inline int64_t convt_out_index(int64_t m, int col, int D, int H, int W, int KD, int KH, int KW, int K) {
  const int taps = KD * KH * KW;
  const int k = col / taps, tap = col - k * taps;
  const int ta = tap / (KH * KW), tb = (tap / KW) % KH, tc = tap % KW;
  const int l = static_cast<int>(m % W);
  int64_t r = m / W;
  const int j = static_cast<int>(r % H);
  r /= H;
  const int i = static_cast<int>(r % D);
  const int64_t n = r / D;
  const int OD = D * KD, OH = H * KH, OW = W * KW;
  return (((n * OD + i * KD + ta) * OH + j * KH + tb) * OW + l * KW + tc) * K + k;
}
}  // namespace dex::v2

namespace dex::v2 {
// dgrad with stride 1 as an fprop (KERNELS.md §3): dx = fprop(dy, w') with C' = K, K' = C, pad' = k - 1 - pad and
// w'[c][tap'][k] = w[k][flip(tap')][c], flip(t, r, s) = (KD-1-t, KH-1-r, KW-1-s). Index of w' element (c, tap', k)'s
// source in w, for the repack kernel and its CPU test.
DEX_HD inline int64_t dgrad_weight_src(int c, int tap, int k, int C, int KD, int KH, int KW) {
  const int t = tap / (KH * KW), r = (tap / KW) % KH, s = tap % KW;
  const int flip = ((KD - 1 - t) * KH + (KH - 1 - r)) * KW + (KW - 1 - s);
  return (int64_t(k) * KD * KH * KW + flip) * C + c;
}
}  // namespace dex::v2
