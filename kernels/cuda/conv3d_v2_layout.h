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

namespace dex::v2 {
// ---- fast unsigned division by a run-time constant (Granlund & Montgomery 1994, fig. 4.1) -----------------------
// l = ceil(log2 d), mul = floor(2^32 (2^l - d) / d) + 1; then n / d = (umulhi(n, mul) + n) >> l for every 32-bit n
// (the sum is formed in 64 bits). Used by the wgrad v2 row decode (three divisions per A row and k-step).
struct FastDiv {
  uint32_t d = 1, mul = 1;
  int shift = 0;
};
DEX_HD inline FastDiv make_fastdiv(uint32_t d) {
  FastDiv f;
  f.d = d;
  int l = 0;
  while ((uint64_t(1) << l) < d) ++l;
  f.shift = l;
  f.mul = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << l) - d)) / d + 1);
  return f;
}
DEX_HD inline uint32_t fdiv(uint32_t n, const FastDiv& f) {
#if defined(__CUDA_ARCH__)
  const uint32_t hi = __umulhi(n, f.mul);
#else
  const uint32_t hi = static_cast<uint32_t>((uint64_t(n) * f.mul) >> 32);
#endif
  return static_cast<uint32_t>((uint64_t(hi) + n) >> f.shift);
}

// ---- wgrad v2 (conv3d_wgrad_kernel_v2): dW as a GEMM with the reduction over output voxels ---------------------
// D[m][n] = sum_v A[m][v] B[v][n] with m = (tap, c) (tap-major, M = taps * C), n = k (N = K) and v = output voxel:
// A[m][v] = x[in(v, tap)][c] (gathered, zero outside the volume), B[v][n] = dy[v][k]. Both operands are stored in
// smem as [voxel][feature] tiles (feature contiguous, as in NDHWC), so fragments are read with ldmatrix.trans.
// CTA tile: kWgBM = 128 rows of M x BN (32 | 64) columns of N, kWgBV = 32 voxels per k-step, 4 warps of 32 x BN.
// The voxel range is cut into a fixed number of splits (wgrad_split: a function of the problem only); CTA (mt, nt, s)
// writes its fp32 tile to partial[s][n][m] (the dW layout [k][tap][c]), and a second kernel adds the splits in
// ascending order (deterministic).
constexpr int kWgBM = 128;
constexpr int kWgBV = 32;

// Offset in halves of 16-byte chunk `chunk` of row `row` in a [rows][chunks * 8] smem tile, chunks in {4, 8, 16}.
// The chunk index is XOR-swizzled so that any 8 consecutive rows starting at a multiple of 8 put the same logical
// chunk into 8 distinct 16-byte slots modulo 128 bytes (a conflict-free ldmatrix phase).
DEX_HD inline int swz_rows(int row, int chunk, int chunks) {
  if (chunks == 4) return row * 32 + ((chunk ^ ((row >> 1) & 3)) << 3);
  return row * chunks * 8 + ((chunk ^ (row & 7)) << 3);
}

// A tile [kWgBV][kWgBM] fill: thread tid copies chunks 4 (tid & 3) + j, j < 4 (32 channels of one tap, as
// C % 32 == 0) of voxel row tid >> 2, so it decodes one voxel per k-step.
DEX_HD inline int wg_a_row(int tid) { return tid >> 2; }
DEX_HD inline int wg_a_chunk(int tid, int j) { return ((tid & 3) << 2) + j; }
// B tile [kWgBV][BN] fill: idx = tid + 128 j, j < BN / 32: chunk idx % (BN / 8) of voxel row idx / (BN / 8).
DEX_HD inline int wg_b_row(int idx, int BN) { return idx / (BN / 8); }
DEX_HD inline int wg_b_chunk(int idx, int BN) { return idx % (BN / 8); }

// ldmatrix.x4.trans lane addresses. Lane l supplies row (l & 7) of stored 8x8 matrix i = l >> 3.
// A (m16 x k16 tile mi of warp rows warp_m, k16 half kk): matrices (k 0-7, m 0-7), (k 0-7, m 8-15), (k 8-15, m 0-7),
// (k 8-15, m 8-15) = fragment registers a0..a3.
DEX_HD inline int wg_lda_row(int kk, int lane) { return kk * 16 + (lane & 7) + ((lane >> 4) << 3); }
DEX_HD inline int wg_lda_chunk(int warp_m, int mi, int lane) { return (warp_m + mi * 16) / 8 + ((lane >> 3) & 1); }
// B (n16 pair nj, k16 half kk): matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15) =
// b0, b1 of n8 tile 2 nj, then b0, b1 of tile 2 nj + 1.
DEX_HD inline int wg_ldb_row(int kk, int lane) { return kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3); }
DEX_HD inline int wg_ldb_chunk(int nj, int lane) { return nj * 2 + (lane >> 4); }

// Split of the voxel reduction: `splits` consecutive ranges of `chunk` voxels (a multiple of kWgBV; the last one
// may be shorter), each at least kWgMinChunk voxels. tiles x splits stays at or below one full wave of resident CTAs
// (wgrad_target_ctas: 132 SMs x the CTAs per SM that ptxas's register counts allow: 6 at BN 32 (78 registers),
// 4 at BN 64 (126)), since equal chunks finish together and a second, partial wave would cost a whole chunk time.
// It depends only on the problem (never on timing or the device), so the summation order and the result are fixed.
constexpr int64_t kWgMinChunk = 8 * kWgBV;
DEX_HD inline int64_t wgrad_target_ctas(int BN) { return 132 * (BN == 64 ? 4 : 6); }
struct WgradSplit {
  int64_t chunk = 0;
  int splits = 0;
};
DEX_HD inline WgradSplit wgrad_split(int64_t voxels, int64_t tiles, int64_t target_ctas) {
  WgradSplit s;
  int64_t want = target_ctas / tiles;  // floor: never a second partial wave
  if (want < 1) want = 1;
  int64_t chunk = (voxels + want - 1) / want;
  chunk = (chunk + kWgBV - 1) / kWgBV * kWgBV;
  if (chunk < kWgMinChunk) chunk = kWgMinChunk;
  s.chunk = chunk;
  s.splits = static_cast<int>((voxels + chunk - 1) / chunk);
  if (s.splits < 1) s.splits = 1;
  return s;
}

// The reduce kernel's destination of partial element i = (n * M + m) (n = GEMM column, m = (tap, c) row) in dW:
// i itself for conv3d (dW[k][tap][c]); for the transposed conv run as a conv3d wgrad with the roles of x and dy
// swapped (n = the transposed conv's input channel c, m = (tap, its output channel k)) the element goes to
// dw[k][tap][c].
DEX_HD inline int64_t wgrad_dst(int64_t i, int N, int taps, int Cm, bool transposed) {
  if (!transposed) return i;
  const int64_t M = int64_t(taps) * Cm;
  const int64_t n = i / M, m = i - n * M;
  const int64_t tap = m / Cm, k = m - tap * Cm;
  return (k * taps + tap) * N + n;
}

// ---- strided dgrad v2: one stride-1 GEMM per output parity class (KERNELS.md §3) --------------------------------
// Per axis (stride s in {1, 2}, kernel k, pad p), dx coordinate i = s j + r gets the taps t = tmax - u s (u < T) with
// t = r + p (mod s), each reading dy at j + (r + p - t) / s = j - pad' + u, pad' = (tmax - r - p) / s. So class
// (rd, rh, rw) is a stride-1 fprop over dy with kernel (Td, Th, Tw), padding pad', J = ceil((D - r) / s) outputs per
// axis, weights w'[c][u][k] = w[k][tap(u)][c], and a scattering epilogue (voxel s j + r). A class with T = 0 owns its
// voxels too: it writes zeros (Overwrite). Stride 1 is the single class r = 0: tmax = k - 1, pad' = k - 1 - p (the
// flipped-weight identity above).
struct DgradAxis {
  int T[2], tmax[2], pad[2], J[2];
};
DEX_HD inline DgradAxis dgrad_axis(int D, int k, int s, int p) {
  DgradAxis a{};
  for (int r = 0; r < 2; ++r) {
    a.T[r] = a.tmax[r] = a.pad[r] = a.J[r] = 0;
    if (r >= s) continue;
    const int t0 = ((r + p) % s + s) % s;
    a.T[r] = t0 < k ? (k - 1 - t0) / s + 1 : 0;
    a.tmax[r] = a.T[r] > 0 ? t0 + (a.T[r] - 1) * s : 0;
    a.pad[r] = a.T[r] > 0 ? (a.tmax[r] - r - p) / s : 0;
    a.J[r] = D > r ? (D - r + s - 1) / s : 0;
  }
  return a;
}
struct DgradPlan {
  int s[3], k[3], p[3];
  DgradAxis ax[3];
  int classes;        // s0 * s1 * s2
  int64_t off[8];     // workspace element offset of class cls = (rd * s1 + rh) * s2 + rw
  int T(int cls) const { return ax[0].T[cls_r(cls, 0)] * ax[1].T[cls_r(cls, 1)] * ax[2].T[cls_r(cls, 2)]; }
  DEX_HD int cls_r(int cls, int axis) const {
    if (axis == 2) return cls % s[2];
    if (axis == 1) return (cls / s[2]) % s[1];
    return cls / (s[2] * s[1]);
  }
};
// For the plan only strides 1 and 2 are valid (dgrad_v2_supports checks it).
inline DgradPlan make_dgrad_plan(int D, int H, int W, int C, int K, const int (&kk)[3], const int (&s)[3],
                                 const int (&p)[3]) {
  DgradPlan q{};
  const int ext[3] = {D, H, W};
  for (int i = 0; i < 3; ++i) {
    q.s[i] = s[i];
    q.k[i] = kk[i];
    q.p[i] = p[i];
    q.ax[i] = dgrad_axis(ext[i], kk[i], s[i], p[i]);
  }
  q.classes = s[0] * s[1] * s[2];
  int64_t off = 0;
  for (int c = 0; c < 8; ++c) {
    q.off[c] = off;
    if (c < q.classes) off += int64_t(C) * q.T(c) * K;
  }
  return q;
}
// Workspace index of w[k][tap][c] in the repacked weights of its class: w'_cls[c][u][k] at off[cls].
DEX_HD inline int64_t dgrad_repack_dst(const DgradPlan& q, int k, int tap, int c, int K) {
  const int t[3] = {tap / (q.k[1] * q.k[2]), (tap / q.k[2]) % q.k[1], tap % q.k[2]};
  int r[3], u[3], T[3];
  for (int i = 0; i < 3; ++i) {
    r[i] = ((t[i] - q.p[i]) % q.s[i] + q.s[i]) % q.s[i];
    T[i] = q.ax[i].T[r[i]];
    u[i] = (q.ax[i].tmax[r[i]] - t[i]) / q.s[i];
  }
  const int cls = (r[0] * q.s[1] + r[1]) * q.s[2] + r[2];
  const int64_t T3 = int64_t(T[0]) * T[1] * T[2];
  const int64_t uu = (int64_t(u[0]) * T[1] + u[1]) * T[2] + u[2];
  return q.off[cls] + (int64_t(c) * T3 + uu) * K + k;
}
}  // namespace dex::v2

namespace dex::v2 {
// Output voxel row of GEMM row m of a dgrad parity class (ConvArgs::ymap): m = ((n * J0 + j0) * J1 + j1) * J2 + j2
// goes to voxel (n, s0 j0 + r0, s1 j1 + r1, s2 j2 + r2) of the (Y0, Y1, Y2) dx tensor.
DEX_HD inline int64_t class_out_row(int64_t m, int J0, int J1, int J2, int Y0, int Y1, int Y2, int s0, int s1, int s2,
                                    int r0, int r1, int r2) {
  const int j2 = static_cast<int>(m % J2);
  int64_t q = m / J2;
  const int j1 = static_cast<int>(q % J1);
  q /= J1;
  const int j0 = static_cast<int>(q % J0);
  const int64_t n = q / J0;
  return ((n * Y0 + s0 * j0 + r0) * Y1 + s1 * j1 + r1) * Y2 + s2 * j2 + r2;
}
// Transposed conv dgrad (kernel == stride, no padding) is a conv3d fprop over dy with kernel = stride and weights
// w'[c][tap][k] = w[k][tap][c]: the source of w' element (c, tap, k) in w.
DEX_HD inline int64_t convt_dgrad_weight_src(int c, int tap, int k, int C, int taps) {
  return (int64_t(k) * taps + tap) * C + c;
}
}  // namespace dex::v2
