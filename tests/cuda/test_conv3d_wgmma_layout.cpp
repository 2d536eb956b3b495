// CPU checks of conv3d_fprop_kernel_v3's index maps (kernels/cuda/conv3d_wgmma_layout.h) against the PTX ISA, and a
// CPU emulation of the whole kernel built from those maps, so the first GPU run is not the first test of the layout:
//  - the wgmma shared-memory matrix descriptor's bit fields (PTX ISA "Matrix Descriptor Format"),
//  - the swizzled tile: a bijection onto the tile, and every 16-bit element where the ISA's canonical K-major layout
//    (Swizzle<B,4,3> o ((8,m),(T,2k)):((W/2,SBO),(1,T)) in bytes, T = 8 halves, W = swizzle width) puts it, for the
//    whole tile and for each k16 slice addressed by advancing the descriptor's start address,
//  - the m64nNk16 f32 accumulator fragment (each element of the 64 x N tile in exactly one thread register),
//  - loader, epilogue and smem plan coverage / alignment,
//  - the emulated kernel (gather with zero fill -> swizzled smem -> descriptor-addressed wgmma -> fragments ->
//    staging tile -> 16-byte stores) on small conv shapes with integer data: bit-equal to the CPU reference, every
//    output written exactly once, nothing outside it.
// Not emulated: cp.async / wgmma group ordering, barriers and proxy fences (reviewed by hand; compute-sanitizer
// racecheck / synccheck and tests/cuda/test_conv_wgmma.cpp on the lease).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "kernels/conv3d.h"
#include "kernels/cuda/conv3d_wgmma_layout.h"
#include "tests/cuda/conv_case.h"
#include "tests/testing.h"

namespace dex {
namespace {

using namespace wg;

// ---- the ISA's definitions, written out independently of the header ---------------------------------------------
// cute-style Swizzle<B, M, S> on a byte address: bits [M, M+B) ^= bits [M+S, M+S+B).
uint32_t isa_swizzle(uint32_t a, int B, int M, int S) {
  const uint32_t yyy = ((1u << B) - 1u) << (M + S);
  return a ^ ((a & yyy) >> S);
}
// Swizzle width W (bytes) and B of a descriptor's 2-bit mode: 1 = 128B (B 3), 2 = 64B (B 2), 3 = 32B (B 1).
int isa_width(int mode) { return mode == 1 ? 128 : mode == 2 ? 64 : mode == 3 ? 32 : 0; }
int isa_bits(int mode) { return mode == 1 ? 3 : mode == 2 ? 2 : mode == 3 ? 1 : 0; }

struct Fields {
  uint32_t start, lbo, sbo, base_offset, mode;
};
// Matrix descriptor fields: start address bits 0-13, LBO 16-29, SBO 32-45 (each the byte value >> 4), base offset
// 49-51, swizzle mode 62-63; the rest is zero.
Fields isa_decode(uint64_t d) {
  Fields f{};
  f.start = uint32_t(d & 0x3FFF) << 4;
  f.lbo = uint32_t((d >> 16) & 0x3FFF) << 4;
  f.sbo = uint32_t((d >> 32) & 0x3FFF) << 4;
  f.base_offset = uint32_t((d >> 49) & 7);
  f.mode = uint32_t(d >> 62);
  return f;
}
uint64_t reserved_bits(uint64_t d) {
  const uint64_t used = 0x3FFFull | (0x3FFFull << 16) | (0x3FFFull << 32) | (7ull << 49) | (3ull << 62);
  return d & ~used;
}

// Byte address wgmma reads for element (r, k) (row r of M or N, k < 16 of the instruction's K) of a K-major 16-bit
// operand with a swizzled descriptor: the canonical layout ((8, m), (T, 2k)) : ((W/2, SBO/2), (1, T)) in halves,
// from the descriptor's start address, then the swizzle on the address.
uint32_t isa_operand_addr(uint64_t desc, int r, int k) {
  const Fields f = isa_decode(desc);
  const int W = isa_width(int(f.mode));
  const int T = 8;
  const uint32_t halves = uint32_t((r % 8) * (W / 2) + (r / 8) * (f.sbo / 2) + (k % T) + (k / T) * T);
  return isa_swizzle(f.start + 2 * halves, isa_bits(int(f.mode)), 4, 3);
}

// ---- descriptor ---------------------------------------------------------------------------------------------------
TEST(WgmmaLayout, DescriptorKnownValue) {
  // 128B-swizzled K-major tile at smem 0x400, LBO 16 B (unused), SBO 1024 B: start 0x40, LBO 1, SBO 64, mode 1.
  EXPECT_EQ(make_desc(0x400, 16, 1024, kSwizzle128B), 0x4000004000010040ull);
  EXPECT_EQ(kmajor_desc(0x400, 128), 0x4000004000010040ull);
  // 64B swizzle (BK = 32): SBO 512 B, mode 2.
  EXPECT_EQ(kmajor_desc(0x2000, 64), (2ull << 62) | (32ull << 32) | (1ull << 16) | (0x2000 >> 4));
}

TEST(WgmmaLayout, DescriptorFieldsRoundTrip) {
  for (uint64_t i = 0; i < 2000; ++i) {
    const uint32_t start = (rng_u32(11, 0, i) % (1u << 18)) & ~15u;  // 16-byte aligned shared addresses < 256 KB
    const uint32_t lbo = (rng_u32(11, 1, i) % (1u << 14)) << 4;
    const uint32_t sbo = (rng_u32(11, 2, i) % (1u << 14)) << 4;
    const int mode = int(rng_u32(11, 3, i) % 4);
    const uint64_t d = make_desc(start, lbo, sbo, mode);
    const Fields f = isa_decode(d);
    ASSERT_EQ(f.start, start) << i;
    ASSERT_EQ(f.lbo, lbo) << i;
    ASSERT_EQ(f.sbo, sbo) << i;
    ASSERT_EQ(f.base_offset, 0u) << i;
    ASSERT_EQ(f.mode, uint32_t(mode)) << i;
    ASSERT_EQ(reserved_bits(d), 0u) << i;
  }
}

TEST(WgmmaLayout, KSliceAdvancesOnlyTheStartAddress) {
  for (int rb : {64, 128}) {
    // The last tile of the largest plan still leaves room for the slices without a carry out of bits 0-13.
    for (uint32_t start : {0u, 1024u, 0x2F000u}) {
      const uint64_t d = kmajor_desc(start, rb);
      for (int kk = 0; kk < rb / 32; ++kk) {
        const Fields f = isa_decode(desc_k_slice(d, kk)), f0 = isa_decode(d);
        EXPECT_EQ(f.start, start + 32u * kk);
        EXPECT_EQ(f.lbo, f0.lbo);
        EXPECT_EQ(f.sbo, f0.sbo);
        EXPECT_EQ(f.mode, f0.mode);
        EXPECT_EQ(f.sbo, 8u * rb);  // 8-row core-matrix groups are 8 rows apart
      }
    }
  }
}

// ---- swizzle --------------------------------------------------------------------------------------------------------
TEST(WgmmaLayout, SwizzleIsTheIsaSwizzle) {
  for (uint32_t a = 0; a < (1u << 16); a += 16) {
    ASSERT_EQ(swizzle_addr(a, kSwizzle128B), isa_swizzle(a, 3, 4, 3)) << a;
    ASSERT_EQ(swizzle_addr(a, kSwizzle64B), isa_swizzle(a, 2, 4, 3)) << a;
    ASSERT_EQ(swizzle_addr(a, kSwizzle32B), isa_swizzle(a, 1, 4, 3)) << a;
    ASSERT_EQ(swizzle_addr(a, kSwizzleNone), a);
  }
  // Known rows: 128B mode, row 3 chunk 0 -> chunk 3; 64B mode, row 2 chunk 0 -> chunk 1 (row pairs share a 128 B line).
  EXPECT_EQ(tile_offset(3, 0, 128), 3u * 128 + 3 * 16);
  EXPECT_EQ(tile_offset(2, 0, 64), 2u * 64 + 1 * 16);
  EXPECT_EQ(tile_offset(7, 7, 128), 7u * 128 + 0);
}

TEST(WgmmaLayout, SwizzledTileIsABijection) {
  for (int rb : {64, 128})
    for (int rows : {64, 128, 256}) {
      std::vector<int> hit(size_t(rows) * rb / 16, 0);
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < rb / 16; ++c) {
          const uint32_t o = tile_offset(r, c, rb);
          ASSERT_EQ(o % 16, 0u);
          ASSERT_LT(o, uint32_t(rows * rb));
          ++hit[o / 16];
          // The row stays in its own 8-row x W atom row (the swizzle only permutes chunks within a row).
          ASSERT_EQ(o / rb, uint32_t(r)) << "row " << r << " chunk " << c;
        }
      for (size_t i = 0; i < hit.size(); ++i) ASSERT_EQ(hit[i], 1) << "rb " << rb << " rows " << rows << " slot " << i;
    }
}

TEST(WgmmaLayout, SwizzleSpreadsEightRowsOverAllBanks) {
  // Eight consecutive rows' chunk c land in 8 distinct 16-byte bank groups (conflict-free 128-byte phases).
  for (int rb : {64, 128})
    for (int r0 = 0; r0 < 64; r0 += 8)
      for (int c = 0; c < rb / 16; ++c) {
        std::set<uint32_t> groups;
        for (int r = r0; r < r0 + 8; ++r) groups.insert((tile_offset(r, c, rb) % 128) / 16);
        // 128B rows: the 8 chunk slots of a 128-byte line; 64B rows (two per line): 2 halves x 4 chunk slots.
        EXPECT_EQ(groups.size(), 8u) << "rb " << rb << " rows " << r0 << ".. chunk " << c;
      }
}

// Every element of a stored tile (row r, channel k) is where wgmma reads (r, k) through the kernel's descriptors:
// the whole BK for the tile descriptor and each k16 slice through desc_k_slice.
TEST(WgmmaLayout, StoredTileMatchesCanonicalLayout) {
  for (int bk : {32, 64}) {
    const int rb = 2 * bk;
    for (uint32_t base : {0u, 4096u, 0x18000u}) {  // pattern-aligned tile bases
      for (int wgi = 0; wgi < kWarpgroups; ++wgi) {
        const uint32_t tile = base + uint32_t(wgi * kWgM * rb);
        const uint64_t d = kmajor_desc(tile, rb);
        for (int kk = 0; kk < bk / kWgmmaK; ++kk) {
          // The ISA's matrix base offset ((start >> 7) & 7 for a start off the pattern boundary) is 0 for every
          // descriptor the kernel builds: slices move the start by < 128 bytes, tiles sit on 1024-byte boundaries.
          const Fields f = isa_decode(desc_k_slice(d, kk));
          ASSERT_EQ((f.start >> 7) & 7u, 0u) << "bk " << bk << " base " << base << " wg " << wgi << " kk " << kk;
          for (int r = 0; r < kWgM; ++r)
            for (int k = 0; k < kWgmmaK; ++k) {
              const int kc = kk * kWgmmaK + k;  // channel within the k-step
              const int row = wgi * kWgM + r;   // row within the CTA tile
              const uint32_t stored = base + tile_offset(row, kc / 8, rb) + 2 * (kc % 8);
              ASSERT_EQ(isa_operand_addr(desc_k_slice(d, kk), r, k), stored)
                  << "bk " << bk << " base " << base << " wg " << wgi << " kk " << kk << " r " << r << " k " << k;
            }
        }
      }
    }
  }
}

// ---- accumulator fragment -------------------------------------------------------------------------------------------
TEST(WgmmaLayout, AccumulatorFragmentCoversTileOnce) {
  for (int n : {32, 64, 128, 256}) {
    std::vector<int> hit(size_t(64) * n, 0);
    for (int t = 0; t < 128; ++t)
      for (int j = 0; j < n / 2; ++j) {
        const int r = acc_row(t, j), c = acc_col(t, j);
        ASSERT_GE(r, 0);
        ASSERT_LT(r, 64);
        ASSERT_GE(c, 0);
        ASSERT_LT(c, n);
        ++hit[size_t(r) * n + c];
      }
    for (size_t i = 0; i < hit.size(); ++i) ASSERT_EQ(hit[i], 1) << "n " << n << " element " << i;
  }
  // ISA figure (m64nNk16, f32 D): thread 0 holds d0,d1 = (0, 0..1), d2,d3 = (8, 0..1), d4 = (0, 8); lane 5 of warp 2
  // holds d0 = (32 + 1, 2).
  EXPECT_EQ(acc_row(0, 0), 0);
  EXPECT_EQ(acc_col(0, 1), 1);
  EXPECT_EQ(acc_row(0, 2), 8);
  EXPECT_EQ(acc_col(0, 4), 8);
  EXPECT_EQ(acc_row(69, 0), 33);
  EXPECT_EQ(acc_col(69, 0), 2);
}

// ---- loader, plan, epilogue -----------------------------------------------------------------------------------------
TEST(WgmmaLayout, LoaderCoversTilesOnce) {
  for (int bk : {32, 64}) {
    std::vector<int> a(size_t(kBM) * (bk / 8), 0);
    for (int tid = 0; tid < kThreads; ++tid)
      for (int i = 0; i < a_rows_per_thread(bk); ++i) {
        const int r = a_row(tid, i, bk), c = a_chunk(tid, bk);
        ASSERT_LT(r, kBM);
        ++a[size_t(r) * (bk / 8) + c];
      }
    for (int v : a) ASSERT_EQ(v, 1) << "bk " << bk;
    for (int bn : {32, 64, 128, 256}) {
      std::vector<int> b(size_t(bn) * (bk / 8), 0);
      for (int tid = 0; tid < kThreads; ++tid)
        for (int j = 0; j < b_copies_per_thread(bk, bn); ++j) {
          const int idx = tid + j * kThreads;
          if (idx >= bn * (bk / 8)) continue;
          ++b[size_t(b_row(idx, bk)) * (bk / 8) + b_chunk(idx, bk)];
        }
      for (int v : b) ASSERT_EQ(v, 1) << "bk " << bk << " bn " << bn;
    }
  }
}

TEST(WgmmaLayout, PlanFitsAndIsAligned) {
  for (int bk : {32, 64})
    for (int bn : {32, 64, 128, 256}) {
      const Plan p = make_plan(bk, bn);
      EXPECT_EQ(p.row_bytes, 2 * bk);
      EXPECT_EQ(p.a_bytes % 1024, 0);
      EXPECT_EQ(p.stage_bytes % 1024, 0) << "every stage's A and B tile must start on a swizzle-pattern boundary";
      EXPECT_EQ((kWgM * p.row_bytes) % 1024, 0);
      EXPECT_LE(p.smem_bytes, 227 * 1024) << "bk " << bk << " bn " << bn << ": over sm_90's per-block limit";
      EXPECT_GE(p.smem_bytes - 1024, kBM * p.out_stride);
      EXPECT_LT(p.ring_bytes + 1024, 1 << 18);  // descriptor start addresses stay in 14 bits (>> 4)
      EXPECT_EQ(p.out_stride % 16, 0);
    }
  EXPECT_EQ(pick_bk(32), 32);
  EXPECT_EQ(pick_bk(96), 32);
  EXPECT_EQ(pick_bk(320), 64);
  EXPECT_EQ(pick_bn(32), 32);
  EXPECT_EQ(pick_bn(320), 64);
  EXPECT_EQ(pick_bn(256), 256);
  EXPECT_EQ(pick_bn(384), 128);
}

TEST(WgmmaLayout, EpilogueStagingIsConflictFreeAndCovered) {
  for (int bn : {32, 64, 128, 256}) {
    const Plan p = make_plan(64, bn);
    // Fragment writes: per warp and register pair j, 32 lanes write 32-bit words to 32 distinct banks.
    for (int warp = 0; warp < kThreads / 32; ++warp)
      for (int j = 0; j < bn / 2; j += 2) {
        std::set<uint32_t> banks;
        for (int lane = 0; lane < 32; ++lane) {
          const int tid = warp * 32 + lane, wgi = tid / 128, t = tid % 128;
          const uint32_t o = staging_offset(wgi * kWgM + acc_row(t, j), acc_col(t, j), p.out_stride);
          ASSERT_EQ(o % 4, 0u);
          banks.insert((o / 4) % 32);
        }
        EXPECT_EQ(banks.size(), 32u) << "bn " << bn << " warp " << warp << " j " << j;
      }
    // Read-out: every 16-byte chunk of the [kBM][BN] tile exactly once.
    std::vector<int> hit(size_t(kBM) * (bn / 8), 0);
    for (int tid = 0; tid < kThreads; ++tid)
      for (int j = 0; j < out_chunks_per_thread(bn); ++j) {
        const int idx = tid + j * kThreads;
        ++hit[size_t(idx / (bn / 8)) * (bn / 8) + idx % (bn / 8)];
      }
    for (int v : hit) ASSERT_EQ(v, 1) << "bn " << bn;
  }
}

TEST(WgmmaLayout, KStepsAreTapMajor) {
  Geom g{};
  g.C = 96;
  g.taps = 27;
  int expect = 0;
  for (int kt = 0; kt < ksteps(g, 32); ++kt, expect += 32) {
    int tap, c0;
    kstep(kt, g.C, 32, &tap, &c0);
    EXPECT_EQ(tap * 96 + c0, expect);
  }
  EXPECT_EQ(ksteps(g, 32), 81);
}

// ---- pipeline schedule ----------------------------------------------------------------------------------------------
// Simulates the ring with the PTX completion rules: cp.async.wait_group N completes all but the newest N committed
// groups; wgmma.wait_group N all but the newest N batches; __syncthreads makes every warpgroup's completed batches
// complete for all. At each iteration: the k-step read has landed and no pending copy targets its slot; the slot
// refilled is not read by any batch that may still be in flight (nor by the batch issued right after the refill), and
// no two pending copies share a slot.
TEST(WgmmaLayout, RingScheduleHasNoHazards) {
  ASSERT_LT(kPrefetch, kStages);
  for (int KT = 1; KT <= 40; ++KT) {
    std::vector<int> group_kstep;  // committed cp.async groups (k-step, or -1 when empty)
    for (int s = 0; s < kPrefetch; ++s) group_kstep.push_back(s < KT ? s : -1);
    for (int kt = 0; kt < KT; ++kt) {
      // top of the iteration: wait_group kCpAsyncPending
      const int complete_upto = int(group_kstep.size()) - 1 - kCpAsyncPending;
      int landed_group = -1;
      for (int g = 0; g < int(group_kstep.size()); ++g)
        if (group_kstep[g] == kt) landed_group = g;
      ASSERT_GE(landed_group, 0) << "KT " << KT << ": k-step " << kt << " was never loaded";
      ASSERT_LE(landed_group, complete_upto) << "KT " << KT << ": k-step " << kt << " read before it landed";
      std::set<int> pending_slots;
      for (int g = complete_upto + 1; g < int(group_kstep.size()); ++g)
        if (group_kstep[g] >= 0) {
          ASSERT_NE(ring_slot(group_kstep[g]), ring_slot(kt)) << "KT " << KT << " kt " << kt;
          pending_slots.insert(ring_slot(group_kstep[g]));
        }
      // after the barrier: batches kt-kWgmmaPending .. kt-1 may still be reading; then the refill and batch kt
      const int pre = kt + kPrefetch;
      if (pre < KT) {
        for (int b = std::max(0, kt - kWgmmaPending); b <= kt; ++b)
          ASSERT_NE(ring_slot(pre), ring_slot(b)) << "KT " << KT << ": refill of k-step " << pre << " at iteration "
                                                  << kt << " overwrites the slot batch " << b << " may be reading";
        ASSERT_EQ(pending_slots.count(ring_slot(pre)), 0u) << "KT " << KT << " kt " << kt;
      }
      group_kstep.push_back(pre < KT ? pre : -1);
    }
  }
}

// ---- the kernel, emulated -------------------------------------------------------------------------------------------
Geom geom_of(const Conv3dParams& p) {
  Geom a{};
  a.N = p.N; a.C = p.C; a.K = p.K; a.D = p.D; a.H = p.H; a.W = p.W;
  a.OD = p.OD(); a.OH = p.OH(); a.OW = p.OW();
  a.KD = p.KD; a.KH = p.KH; a.KW = p.KW;
  a.s0 = p.stride[0]; a.s1 = p.stride[1]; a.s2 = p.stride[2];
  a.p0 = p.pad[0]; a.p1 = p.pad[1]; a.p2 = p.pad[2];
  a.d0 = p.dil[0]; a.d1 = p.dil[1]; a.d2 = p.dil[2];
  a.taps = p.KD * p.KH * p.KW;
  return a;
}

// One CTA at a time, one k-step at a time (the ring only changes when a slot is filled); smem is an array of 16-bit
// slots (as floats) indexed by byte address / 2, poisoned with NaN before each fill. Returns y (NaN where unwritten).
std::vector<float> emulate_v3(const Conv3dParams& p, const std::vector<float>& x, const std::vector<float>& w,
                              std::vector<int>& writes) {
  const Geom g = geom_of(p);
  const int BK = pick_bk(p.C), BN = pick_bn(p.K);
  const Plan P = make_plan(BK, BN);
  const int64_t M = p.out_voxels();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(size_t(p.out_elems()), nan);
  writes.assign(y.size(), 0);
  std::vector<float> smem(size_t(P.smem_bytes) / 2);
  const int KT = ksteps(g, BK);
  for (int64_t bx = 0; bx * kBM < M; ++bx)
    for (int by = 0; by < p.K / BN; ++by) {
      const int64_t m_base = bx * kBM;
      const int n_base = by * BN;
      std::vector<double> D(size_t(kBM) * BN, 0.0);  // [wgi * 64 + r][n]
      for (int kt = 0; kt < KT; ++kt) {
        const uint32_t sa = uint32_t(ring_slot(kt) * P.stage_bytes), sb = sa + uint32_t(P.a_bytes);
        std::fill(smem.begin() + sa / 2, smem.begin() + (sa + P.stage_bytes) / 2, nan);
        int tap, c0;
        kstep(kt, g.C, BK, &tap, &c0);
        for (int tid = 0; tid < kThreads; ++tid) {
          for (int i = 0; i < a_rows_per_thread(BK); ++i) {
            const int row = a_row(tid, i, BK), ch = a_chunk(tid, BK);
            const RowBase rb = row_base(g, m_base + row);
            const int64_t off = a_src(g, rb, tap, c0 + ch * 8);
            for (int e = 0; e < 8; ++e)
              smem[(sa + tile_offset(row, ch, P.row_bytes)) / 2 + e] = off >= 0 ? x[size_t(off + e)] : 0.f;
          }
          for (int j = 0; j < b_copies_per_thread(BK, BN); ++j) {
            const int idx = tid + j * kThreads;
            if (idx >= BN * (BK / 8)) continue;
            const int row = b_row(idx, BK), ch = b_chunk(idx, BK);
            const int64_t off = b_src(g, n_base + row, tap, c0 + ch * 8);
            for (int e = 0; e < 8; ++e) smem[(sb + tile_offset(row, ch, P.row_bytes)) / 2 + e] = w[size_t(off + e)];
          }
        }
        for (int wgi = 0; wgi < kWarpgroups; ++wgi) {
          const uint64_t da = kmajor_desc(sa + uint32_t(wgi * kWgM * P.row_bytes), P.row_bytes);
          const uint64_t db = kmajor_desc(sb, P.row_bytes);
          for (int kk = 0; kk < BK / kWgmmaK; ++kk) {
            const uint64_t dak = desc_k_slice(da, kk), dbk = desc_k_slice(db, kk);
            std::vector<double> A(size_t(kWgM) * kWgmmaK), B(size_t(BN) * kWgmmaK);  // what wgmma reads
            for (int r = 0; r < kWgM; ++r)
              for (int k = 0; k < kWgmmaK; ++k) A[size_t(r) * kWgmmaK + k] = smem[isa_operand_addr(dak, r, k) / 2];
            for (int n = 0; n < BN; ++n)
              for (int k = 0; k < kWgmmaK; ++k) B[size_t(n) * kWgmmaK + k] = smem[isa_operand_addr(dbk, n, k) / 2];
            for (int r = 0; r < kWgM; ++r)
              for (int n = 0; n < BN; ++n) {
                double s = 0;
                for (int k = 0; k < kWgmmaK; ++k) s += A[size_t(r) * kWgmmaK + k] * B[size_t(n) * kWgmmaK + k];
                D[size_t(wgi * kWgM + r) * BN + n] += s;
              }
          }
        }
      }
      // Fragments -> staging tile -> 16-byte chunks.
      std::vector<float> stage(size_t(kBM) * P.out_stride / 2, nan);
      for (int tid = 0; tid < kThreads; ++tid) {
        const int wgi = tid / 128, t = tid % 128;
        for (int j = 0; j < BN / 2; ++j) {
          const int row = wgi * kWgM + acc_row(t, j), col = acc_col(t, j);
          stage[staging_offset(row, col, P.out_stride) / 2] = float(D[size_t(row) * BN + col]);
        }
      }
      for (int tid = 0; tid < kThreads; ++tid)
        for (int j = 0; j < out_chunks_per_thread(BN); ++j) {
          const int idx = tid + j * kThreads;
          const int row = idx / (BN / 8), ch = idx % (BN / 8);
          const int64_t m = m_base + row;
          if (m >= M) continue;
          for (int e = 0; e < 8; ++e) {
            const size_t o = size_t(m * p.K + n_base + ch * 8 + e);
            y[o] = stage[staging_offset(row, ch * 8 + e, P.out_stride) / 2];
            ++writes[o];
          }
        }
    }
  return y;
}

using EmuCase = NamedConv;

class WgmmaEmulation : public ::testing::TestWithParam<EmuCase> {};

TEST_P(WgmmaEmulation, MatchesReferenceExactly) {
  const Conv3dParams p = GetParam().p;
  const uint64_t seed = 3000 + uint64_t(p.C) * 7 + uint64_t(p.K);
  // Integers in [-2, 2]: every product and partial sum is exact in fp32 and double, so the emulation must equal the
  // reference bit for bit (after the same fp16 rounding; |y| <= 4 x 27 x 96 < 2^24).
  const std::vector<float> x = testing::random_ints(p.in_elems(), seed, -2, 2);
  const std::vector<float> w = testing::random_ints(p.weight_elems(), seed + 1, -2, 2);
  std::vector<float> ref(size_t(p.out_elems()));
  conv3d_fprop_cpu(p, x.data(), w.data(), ref.data(), CpuConvImpl::Reference);
  std::vector<int> writes;
  const std::vector<float> y = emulate_v3(p, x, w, writes);
  int64_t bad = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (writes[i] != 1 || !(y[i] == ref[i])) {
      if (bad < 5)
        ADD_FAILURE() << GetParam().name << ": element " << i << " written " << writes[i] << " times, got " << y[i]
                      << ", expected " << ref[i] << " (seed " << seed << ")";
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0);
}

// Every tile configuration (BK 32 / 64, BN 32 / 64 / 128 / 256), stride 1 / 2 / (2,2,1), 3x3x3 and 1x1x1, ragged
// M (not a multiple of 128), several N column tiles, batch 2, dilation 2.
INSTANTIATE_TEST_SUITE_P(
    Shapes, WgmmaEmulation,
    ::testing::Values(EmuCase{"C32K32k3s1_D5H6W7", shape(1, 32, 32, 5, 6, 7, 3, 1, 1, 1)},
                      EmuCase{"C64K64k3s2_D7H6W5", shape(1, 64, 64, 7, 6, 5, 3, 2, 2, 2)},
                      EmuCase{"C32K128k3s221_D6H5W5", shape(1, 32, 128, 6, 5, 5, 3, 2, 2, 1)},
                      EmuCase{"C64K256k1s1_D5H5W6", shape(1, 64, 256, 5, 5, 6, 1, 1, 1, 1)},
                      EmuCase{"C32K64k1s2_D7H6W5", shape(1, 32, 64, 7, 6, 5, 1, 2, 2, 2)},
                      EmuCase{"C96K96k3s1_D3H5W4", shape(1, 96, 96, 3, 5, 4, 3, 1, 1, 1)},
                      EmuCase{"N2C32K32k3s1_D3H4W5", shape(2, 32, 32, 3, 4, 5, 3, 1, 1, 1)},
                      EmuCase{"C32K32k3s1d2_D5H5W5", shape(1, 32, 32, 5, 5, 5, 3, 1, 1, 1, 2)}),
    [](const ::testing::TestParamInfo<EmuCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace dex
