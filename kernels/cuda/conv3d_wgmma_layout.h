// Index maps of conv3d_fprop_kernel_v3 (conv3d_wgmma.cu, wgmma on sm_90a) as plain host+device functions, so
// tests/cuda/test_conv3d_wgmma_layout.cpp can check them on the CPU against the PTX ISA without a GPU: the implicit-
// GEMM row/column (im2col) map, the loader's thread -> (row, 16-byte chunk) map, the 128B/64B swizzle, the wgmma
// shared-memory matrix descriptor, the m64nNk16 f32 accumulator fragment and the epilogue's staging tile.
//
// GEMM view (KERNELS.md §3): M = output voxels (NDHWC order), N = K output channels, K-dim = taps x C, tap-major;
// k-step kt covers tap kt / (C / BK) and channels [c0, c0 + BK). A[m][(tap, c)] = x[in(m, tap)][c] (0 outside the
// volume), B[n][(tap, c)] = w[n][tap][c] (KTRSC is K-major for B, wgmma's "no transpose").
//
// Shared memory per stage: A tile [kBM rows][BK halves] then B tile [BN rows][BK halves], both K-major, row bytes
// RB = 2 BK, swizzled with the ISA's RB-byte mode (BK = 64: 128B swizzle, BK = 32: 64B swizzle), every tile on a
// 1024-byte boundary so that the swizzle (a function of address bits) agrees between the writers and wgmma.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace dex::wg {

constexpr int kBM = 128;        // output voxels per CTA
constexpr int kWgM = 64;        // rows per warpgroup (wgmma m64)
constexpr int kWarpgroups = kBM / kWgM;
constexpr int kThreads = 128 * kWarpgroups;
constexpr int kStages = 4;      // cp.async ring: 2 stages in flight, 1 being multiplied, 1 still read by wgmma
constexpr int kWgmmaK = 16;     // k per wgmma instruction (16-bit inputs)

// ---- pipeline schedule (checked by the ring simulation in the CPU test) -------------------------------------------
// The prologue loads k-steps 0 .. kPrefetch-1 (one cp.async group each); iteration kt waits until at most
// kCpAsyncPending groups are pending (so k-step kt has landed), publishes it (proxy fence + barrier), loads k-step
// kt + kPrefetch into ring_slot(kt + kPrefetch) (one group, empty past the end), issues k-step kt's wgmma batch on
// ring_slot(kt) and leaves kWgmmaPending batches in flight.
constexpr int kPrefetch = kStages - 2;
constexpr int kCpAsyncPending = kPrefetch - 1;
constexpr int kWgmmaPending = 1;
DEX_HD constexpr int ring_slot(int kt) { return kt % kStages; }

// ---- swizzle ------------------------------------------------------------------------------------------------------
// Descriptor encodings of the swizzle modes (PTX ISA, "Matrix Descriptor Format", bits 62-63).
enum SwizzleMode : int { kSwizzleNone = 0, kSwizzle128B = 1, kSwizzle64B = 2, kSwizzle32B = 3 };

// The mode whose swizzle width equals a K-major row of `row_bytes` (32, 64 or 128).
DEX_HD constexpr int swizzle_for_row_bytes(int row_bytes) {
  return row_bytes == 128 ? kSwizzle128B : row_bytes == 64 ? kSwizzle64B : row_bytes == 32 ? kSwizzle32B : kSwizzleNone;
}
// Width in bytes of a swizzle mode (16 for none: one core-matrix row).
DEX_HD constexpr int swizzle_bytes(int mode) {
  return mode == kSwizzle128B ? 128 : mode == kSwizzle64B ? 64 : mode == kSwizzle32B ? 32 : 16;
}

// The swizzle applied to a shared-memory byte address: the 16-byte chunk index within a `width`-byte row (address
// bits 4..) is XORed with the row index mod (width / 16) (address bits 7..): 128B = bits 4-6 ^= 7-9, 64B = bits 4-5
// ^= 7-8, 32B = bit 4 ^= bit 7 (cute Swizzle<3,4,3>, <2,4,3>, <1,4,3> on bytes). An involution.
DEX_HD constexpr uint32_t swizzle_addr(uint32_t addr, int mode) {
  const uint32_t mask = mode == kSwizzle128B ? 7u : mode == kSwizzle64B ? 3u : mode == kSwizzle32B ? 1u : 0u;
  return addr ^ (((addr >> 7) & mask) << 4);
}

// Byte offset (from a 1024-aligned tile base) of 16-byte chunk `chunk` of K-major row `row` in a tile of
// `row_bytes`-byte rows swizzled by the matching mode.
DEX_HD constexpr uint32_t tile_offset(int row, int chunk, int row_bytes) {
  return swizzle_addr(uint32_t(row) * uint32_t(row_bytes) + uint32_t(chunk) * 16u, swizzle_for_row_bytes(row_bytes));
}

// ---- wgmma shared-memory matrix descriptor (PTX ISA 9.7.15.5.1) ---------------------------------------------------
// bits 0-13: start address >> 4; 16-29: leading-dimension byte offset >> 4; 32-45: stride-dimension byte offset
// >> 4; 49-51: matrix base offset (0: tiles are pattern-aligned); 62-63: swizzle mode. Shared addresses are < 2^18.
DEX_HD constexpr uint64_t make_desc(uint32_t start_addr, uint32_t lbo_bytes, uint32_t sbo_bytes, int mode) {
  return uint64_t((start_addr & 0x3FFFFu) >> 4) | (uint64_t((lbo_bytes >> 4) & 0x3FFFu) << 16) |
         (uint64_t((sbo_bytes >> 4) & 0x3FFFu) << 32) | (uint64_t(mode & 3) << 62);
}
// Descriptor of a K-major swizzled tile with `row_bytes`-byte rows starting at `start_addr`: core matrices of 8 rows
// are 8 x row_bytes apart (SBO); LBO is unused for swizzled K-major layouts (set to 16 B, i.e. 1, as CUTLASS does).
DEX_HD constexpr uint64_t kmajor_desc(uint32_t start_addr, int row_bytes) {
  return make_desc(start_addr, 16u, 8u * uint32_t(row_bytes), swizzle_for_row_bytes(row_bytes));
}
// The k16 slice kk (0 .. BK/16 - 1) of a tile: the start address advances by kk x 32 bytes inside the swizzled row
// (the swizzle acts on the final address bits, so the slice reads the chunks the writers put there).
DEX_HD constexpr uint64_t desc_k_slice(uint64_t desc, int kk) { return desc + uint64_t((kk * kWgmmaK * 2) >> 4); }

// ---- accumulator fragment of wgmma.m64nNk16 with f32 D (PTX ISA, "Matrix fragments for wgmma .m64nNk16") ---------
// Thread t (0..127) of the warpgroup holds N/2 floats; register j covers row 16 (t / 32) + (t % 32) / 4 + 8 ((j / 2)
// % 2) and column 8 (j / 4) + 2 (t % 4) + j % 2 of the 64 x N tile.
DEX_HD constexpr int acc_row(int t, int j) { return 16 * (t >> 5) + ((t & 31) >> 2) + 8 * ((j >> 1) & 1); }
DEX_HD constexpr int acc_col(int t, int j) { return 8 * (j >> 2) + 2 * (t & 3) + (j & 1); }

// ---- tile configuration ------------------------------------------------------------------------------------------
// BK (channels per k-step) is 64 when C % 64 == 0, else 32; BN (output channels per CTA) is the largest of 256, 128,
// 64, 32 dividing K.
struct Plan {
  int bk, bn;
  int row_bytes;    // 2 BK
  int a_bytes;      // kBM x row_bytes
  int b_bytes;      // BN x row_bytes
  int stage_bytes;  // a_bytes + b_bytes (a multiple of 1024)
  int ring_bytes;   // kStages x stage_bytes
  int out_stride;   // epilogue staging row stride in bytes: 2 BN + 16 (conflict-free fragment writes)
  int smem_bytes;   // max(ring, staging) + 1024 (alignment slack of the dynamic smem base)
};
DEX_HD constexpr Plan make_plan(int bk, int bn) {
  Plan p{};
  p.bk = bk;
  p.bn = bn;
  p.row_bytes = 2 * bk;
  p.a_bytes = kBM * p.row_bytes;
  p.b_bytes = bn * p.row_bytes;
  p.stage_bytes = p.a_bytes + p.b_bytes;
  p.ring_bytes = kStages * p.stage_bytes;
  p.out_stride = 2 * bn + 16;
  const int staging = kBM * p.out_stride;
  p.smem_bytes = (p.ring_bytes > staging ? p.ring_bytes : staging) + 1024;
  return p;
}
DEX_HD constexpr int pick_bk(int C) { return C % 64 == 0 ? 64 : 32; }
DEX_HD constexpr int pick_bn(int K) { return K % 256 == 0 ? 256 : K % 128 == 0 ? 128 : K % 64 == 0 ? 64 : 32; }

// ---- loader: thread tid -> (row, 16-byte chunk) ------------------------------------------------------------------
// A: chunk tid % (BK/8) of rows tid / (BK/8) + i kThreads / (BK/8), i < a_rows_per_thread(BK).
DEX_HD constexpr int a_rows_per_thread(int bk) { return kBM * (bk / 8) / kThreads; }
DEX_HD constexpr int a_row(int tid, int i, int bk) { return tid / (bk / 8) + i * (kThreads / (bk / 8)); }
DEX_HD constexpr int a_chunk(int tid, int bk) { return tid % (bk / 8); }
// B: copy idx = tid + j kThreads (j < b_copies_per_thread), valid while idx < BN x BK / 8: row idx / (BK/8), chunk
// idx % (BK/8).
DEX_HD constexpr int b_copies_per_thread(int bk, int bn) { return (bn * (bk / 8) + kThreads - 1) / kThreads; }
DEX_HD constexpr int b_row(int idx, int bk) { return idx / (bk / 8); }
DEX_HD constexpr int b_chunk(int idx, int bk) { return idx % (bk / 8); }

// ---- implicit GEMM (im2col) map ------------------------------------------------------------------------------------
// Plain copy of the problem for kernel arguments (output extents precomputed).
struct Geom {
  int N, C, K, D, H, W, OD, OH, OW, KD, KH, KW;
  int s0, s1, s2, p0, p1, p2, d0, d1, d2;
  int taps;
};

// k-step kt -> (tap, first channel).
DEX_HD inline void kstep(int kt, int C, int bk, int* tap, int* c0) {
  const int cc = C / bk;
  *tap = kt / cc;
  *c0 = (kt - *tap * cc) * bk;
}
DEX_HD inline int ksteps(const Geom& g, int bk) { return g.taps * (g.C / bk); }

// GEMM row m -> sample and the input coordinate of tap (0,0,0); valid = m < M.
struct RowBase {
  int n, z, y, x;
  bool valid;
};
DEX_HD inline RowBase row_base(const Geom& g, int64_t m) {
  RowBase b{};
  const int64_t M = int64_t(g.N) * g.OD * g.OH * g.OW;
  b.valid = m >= 0 && m < M;
  int64_t r = b.valid ? m : 0;
  const int ow = static_cast<int>(r % g.OW);
  r /= g.OW;
  const int oh = static_cast<int>(r % g.OH);
  r /= g.OH;
  const int od = static_cast<int>(r % g.OD);
  b.n = static_cast<int>(r / g.OD);
  b.z = od * g.s0 - g.p0;
  b.y = oh * g.s1 - g.p1;
  b.x = ow * g.s2 - g.p2;
  return b;
}
// Element offset in x of A[row][(tap, c)], or -1 when the tap falls outside the volume (or the row past M): zero.
DEX_HD inline int64_t a_src(const Geom& g, const RowBase& b, int tap, int c) {
  const int t = tap / (g.KH * g.KW), r = (tap / g.KW) % g.KH, s = tap % g.KW;
  const int iz = b.z + t * g.d0, iy = b.y + r * g.d1, ix = b.x + s * g.d2;
  if (!b.valid || iz < 0 || iz >= g.D || iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) return -1;
  return (((int64_t(b.n) * g.D + iz) * g.H + iy) * g.W + ix) * g.C + c;
}
// Element offset in w (KTRSC) of B[n][(tap, c)].
DEX_HD inline int64_t b_src(const Geom& g, int n, int tap, int c) { return (int64_t(n) * g.taps + tap) * g.C + c; }

// ---- epilogue ------------------------------------------------------------------------------------------------------
// Accumulators go to a [kBM][BN] 16-bit staging tile (row stride out_stride bytes); then thread tid stores 16-byte
// chunks idx = tid + j kThreads of it: row idx / (BN/8), chunk idx % (BN/8) -> y[(m_base + row) K + n_base + 8 chunk].
DEX_HD constexpr uint32_t staging_offset(int row, int col, int out_stride) {
  return uint32_t(row) * uint32_t(out_stride) + uint32_t(col) * 2u;
}
DEX_HD constexpr int out_chunks_per_thread(int bn) { return kBM * (bn / 8) / kThreads; }

}  // namespace dex::wg
