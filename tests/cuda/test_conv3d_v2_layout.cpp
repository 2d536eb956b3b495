// CPU emulation of conv3d_fprop_kernel_v2 (kernels/cuda/conv3d.cu) built from its index maps
// (kernels/cuda/conv3d_v2_layout.h) and the PTX ISA's definitions of ldmatrix.x4 and the mma.m16n8k16 A/B/C fragments.
// It runs without a GPU and checks what a GPU run would otherwise be the first to show: the tile fill (gather, zero
// fill outside the volume and past M), the swizzle, the ldmatrix lane addresses, the fragment-to-matrix mapping and
// the epilogue (each output written exactly once). Integer inputs, so the result must equal the reference exactly.
// Not emulated: cp.async group ordering and barriers (reviewed by hand; compute-sanitizer racecheck on the lease).
#include <gtest/gtest.h>

#include <array>
#include <functional>
#include <vector>

#include "kernels/conv3d.h"
#include "kernels/conv_transpose3d.h"
#include "kernels/cuda/conv3d_v2_layout.h"
#include "tests/testing.h"

namespace dex {
namespace {

using namespace v2;

// ldmatrix.x4: lane supplies the row address of row (lane % 8) of matrix (lane / 8); afterwards lane holds, in
// register i, elements (lane / 4, 2 (lane % 4)) and (lane / 4, 2 (lane % 4) + 1) of matrix i (PTX ISA, ldmatrix).
using Frag = std::array<std::array<std::array<float, 2>, 4>, 32>;  // [lane][reg][half]
Frag ldmatrix_x4(const std::vector<float>& smem, const std::array<int, 32>& addr) {
  Frag f{};
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i)
      for (int e = 0; e < 2; ++e) f[lane][i][e] = smem[addr[8 * i + lane / 4] + 2 * (lane % 4) + e];
  return f;
}

// mma.m16n8k16.row.col: A (16x16) from regs a[0..3] = (g, 2t..), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..);
// B (16x8, k x n) from b0 = (k 2t.., n g), b1 = (k 2t+8.., n g); D element q of lane = (g + 8 (q/2), 2t + q%2).
void mma_16816(std::array<std::array<double, 4>, 32>& d, const Frag& a, int a_base, const Frag& b, int b_base) {
  double A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 2; ++e) {
      A[g][2 * t + e] = a[lane][a_base + 0][e];
      A[g + 8][2 * t + e] = a[lane][a_base + 1][e];
      A[g][2 * t + 8 + e] = a[lane][a_base + 2][e];
      A[g + 8][2 * t + 8 + e] = a[lane][a_base + 3][e];
      B[2 * t + e][g] = b[lane][b_base + 0][e];
      B[2 * t + 8 + e][g] = b[lane][b_base + 1][e];
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, t = lane & 3;
    for (int q = 0; q < 4; ++q) {
      const int r = g + 8 * (q >> 1), c = 2 * t + (q & 1);
      double s = 0;
      for (int k = 0; k < 16; ++k) s += A[r][k] * B[k][c];
      d[lane][q] += s;
    }
  }
}

// The kernel, one CTA at a time, one k-step at a time (the pipeline only reorders when tiles are loaded).
// a_src(m, kt, chunk) gives the x offset of A row m's chunk at k-step kt (or -1: zero fill), b_src(n, kt, chunk) the
// w offset, out(m, col) the y offset, exactly as the kernel's two modes compute them.
struct GemmView {
  int64_t M;
  int N, KT;
  std::function<int64_t(int64_t, int, int)> a_src;
  std::function<int64_t(int, int, int)> b_src;
  std::function<int64_t(int64_t, int)> out;
};

// Runs the view into y (counting writes per element), so several launches (dgrad's parity classes) can share one y.
void emulate_v2_into(const GemmView& g, const std::vector<float>& x, const std::vector<float>& w, std::vector<float>& y,
                     std::vector<int>& writes) {
  const int BN = g.N % 64 == 0 ? 64 : 32, kNT = BN / 8;
  std::vector<float> sA(kBM * kBK), sB(BN * kBK);
  for (int64_t bx = 0; bx * kBM < g.M; ++bx)
    for (int by = 0; by < g.N / BN; ++by) {
      const int64_t m_base = bx * kBM;
      const int n_base = by * BN;
      std::vector<std::array<std::array<double, 4>, 32>> acc(4 * 2 * kNT);  // [warp][mi][ni] -> [lane][q]
      for (auto& a : acc)
        for (auto& l : a) l.fill(0);
      for (int kt = 0; kt < g.KT; ++kt) {
        std::fill(sA.begin(), sA.end(), -999.f);  // any slot not written by a "cp.async" shows up
        std::fill(sB.begin(), sB.end(), -999.f);
        for (int tid = 0; tid < kThreads; ++tid) {
          for (int i = 0; i < 4; ++i) {
            const int row = a_row(tid, i), chunk = a_chunk(tid);
            const int64_t m = m_base + row;
            const int64_t src = m < g.M ? g.a_src(m, kt, chunk) : -1;
            for (int e = 0; e < 8; ++e) sA[swz(row, chunk) + e] = src >= 0 ? x[src + e] : 0.f;
          }
          for (int j = 0; j < BN / 32; ++j) {
            const int idx = tid + kThreads * j, row = b_row(idx), chunk = b_chunk(idx);
            const int64_t src = g.b_src(n_base + row, kt, chunk);
            for (int e = 0; e < 8; ++e) sB[swz(row, chunk) + e] = w[src + e];
          }
        }
        for (int warp = 0; warp < 4; ++warp) {
          const int warp_m = warp * 32;
          for (int kk = 0; kk < 2; ++kk) {
            Frag af[2], bf[4];
            for (int mi = 0; mi < 2; ++mi) {
              std::array<int, 32> addr;
              for (int l = 0; l < 32; ++l) addr[l] = swz(lda_row(warp_m, mi, l), lda_chunk(kk, l));
              af[mi] = ldmatrix_x4(sA, addr);
            }
            for (int nj = 0; nj < kNT / 2; ++nj) {
              std::array<int, 32> addr;
              for (int l = 0; l < 32; ++l) addr[l] = swz(ldb_row(nj, l), ldb_chunk(kk, l));
              bf[nj] = ldmatrix_x4(sB, addr);
            }
            for (int mi = 0; mi < 2; ++mi)
              for (int ni = 0; ni < kNT; ++ni)  // n8 tile ni: regs (0,1) of pair ni/2 when even, (2,3) when odd
                mma_16816(acc[(warp * 2 + mi) * kNT + ni], af[mi], 0, bf[ni / 2], (ni & 1) * 2);
          }
        }
      }
      for (int warp = 0; warp < 4; ++warp)
        for (int mi = 0; mi < 2; ++mi)
          for (int ni = 0; ni < kNT; ++ni)
            for (int lane = 0; lane < 32; ++lane)
              for (int q = 0; q < 4; ++q) {
                const int64_t m = m_base + acc_row(warp * 32, mi, lane, q);
                if (m >= g.M) continue;
                const int64_t o = g.out(m, n_base + acc_col(ni, lane, q));
                y[o] = static_cast<float>(acc[(warp * 2 + mi) * kNT + ni][lane][q]);
                ++writes[o];
              }
    }
}

std::vector<float> emulate_v2(const GemmView& g, const std::vector<float>& x, const std::vector<float>& w,
                              int64_t out_elems, std::vector<int>& writes) {
  std::vector<float> y(static_cast<size_t>(out_elems), -12345.f);
  writes.assign(y.size(), 0);
  emulate_v2_into(g, x, w, y, writes);
  return y;
}

// conv3d fprop: implicit GEMM with the per-tap gather (the kernel's kTrans = false mode).
GemmView fprop_view(const Conv3dParams& p) {
  GemmView g;
  g.M = p.out_voxels();
  g.N = p.K;
  g.KT = static_cast<int>(p.taps()) * (p.C / kBK);
  g.a_src = [p](int64_t m, int kt, int chunk) -> int64_t {
    int tap, c0;
    kstep(kt, p.C, &tap, &c0);
    const int t = tap / (p.KH * p.KW), r = (tap / p.KW) % p.KH, s = tap % p.KW;
    int64_t rem = m;
    const int ow = int(rem % p.OW()); rem /= p.OW();
    const int oh = int(rem % p.OH()); rem /= p.OH();
    const int od = int(rem % p.OD());
    const int n = int(rem / p.OD());
    const int iz = od * p.stride[0] - p.pad[0] + t * p.dil[0], iy = oh * p.stride[1] - p.pad[1] + r * p.dil[1],
              ix = ow * p.stride[2] - p.pad[2] + s * p.dil[2];
    if (iz < 0 || iz >= p.D || iy < 0 || iy >= p.H || ix < 0 || ix >= p.W) return -1;
    return (((int64_t(n) * p.D + iz) * p.H + iy) * p.W + ix) * p.C + c0 + chunk * 8;
  };
  g.b_src = [p](int n, int kt, int chunk) -> int64_t {
    int tap, c0;
    kstep(kt, p.C, &tap, &c0);
    return (int64_t(n) * p.taps() + tap) * p.C + c0 + chunk * 8;
  };
  g.out = [p](int64_t m, int col) { return m * p.K + col; };
  return g;
}

// Transposed conv (kernel == stride) as one GEMM (kTrans = true): rows are input voxels, columns (k, tap).
GemmView convt_view(const ConvTranspose3dParams& p) {
  GemmView g;
  g.M = int64_t(p.N) * p.D * p.H * p.W;
  g.N = p.K * static_cast<int>(p.taps());
  g.KT = p.C / kBK;
  g.a_src = [p](int64_t m, int kt, int chunk) -> int64_t { return m * p.C + kt * kBK + chunk * 8; };
  g.b_src = [p](int n, int kt, int chunk) -> int64_t { return int64_t(n) * p.C + kt * kBK + chunk * 8; };
  g.out = [p](int64_t m, int col) { return convt_out_index(m, col, p.D, p.H, p.W, p.KD, p.KH, p.KW, p.K); };
  return g;
}

Conv3dParams shape(int N, int C, int K, int D, int H, int W, int k, int s0, int s1, int s2) {
  Conv3dParams p;
  p.N = N; p.C = C; p.K = K; p.D = D; p.H = H; p.W = W;
  p.KD = p.KH = p.KW = k;
  p.stride[0] = s0; p.stride[1] = s1; p.stride[2] = s2;
  p.pad[0] = p.pad[1] = p.pad[2] = (k - 1) / 2;
  return p;
}

TEST(Conv3dV2Layout, SwizzleIsABijectionAndConflictFree) {
  for (int row = 0; row < 128; ++row) {
    int seen = 0;
    for (int c = 0; c < 4; ++c) seen |= 1 << ((swz(row, c) - row * kBK) / 8);
    EXPECT_EQ(seen, 0xF) << "row " << row;
  }
  // Every ldmatrix phase (8 lanes = one 8x8 matrix) must touch 8 distinct 16-byte slots of a 128-byte line.
  for (int kk = 0; kk < 2; ++kk)
    for (int mi = 0; mi < 2; ++mi)
      for (int phase = 0; phase < 4; ++phase) {
        int slots = 0;
        for (int l = phase * 8; l < phase * 8 + 8; ++l)
          slots |= 1 << ((swz(lda_row(0, mi, l), lda_chunk(kk, l)) * 2 / 16) % 8);
        EXPECT_EQ(slots, 0xFF) << "A kk " << kk << " mi " << mi << " phase " << phase;
        slots = 0;
        for (int l = phase * 8; l < phase * 8 + 8; ++l)
          slots |= 1 << ((swz(ldb_row(mi, l), ldb_chunk(kk, l)) * 2 / 16) % 8);
        EXPECT_EQ(slots, 0xFF) << "B kk " << kk << " nj " << mi << " phase " << phase;
      }
}

// Readable ctest names: N2C32K64D8H8W6k3s221.
std::string conv_case_name(const ::testing::TestParamInfo<Conv3dParams>& info) {
  const Conv3dParams& p = info.param;
  return str("N", p.N, "C", p.C, "K", p.K, "D", p.D, "H", p.H, "W", p.W, "k", p.KD, "s", p.stride[0], p.stride[1],
             p.stride[2]);
}
std::string convt_case_name(const ::testing::TestParamInfo<ConvTranspose3dParams>& info) {
  const ConvTranspose3dParams& p = info.param;
  return str("N", p.N, "C", p.C, "K", p.K, "D", p.D, "H", p.H, "W", p.W, "k", p.KD, p.KH, p.KW);
}

class Conv3dV2Emulation : public ::testing::TestWithParam<Conv3dParams> {};

TEST_P(Conv3dV2Emulation, MatchesReferenceExactly) {
  const Conv3dParams p = GetParam();
  const auto x = testing::random_ints(p.in_elems(), 7, -2, 2);
  const auto w = testing::random_ints(p.weight_elems(), 8, -2, 2);
  std::vector<float> ref(static_cast<size_t>(p.out_elems()));
  conv3d_fprop_cpu(p, x.data(), w.data(), ref.data(), CpuConvImpl::Reference);
  std::vector<int> writes;
  const auto y = emulate_v2(fprop_view(p), x, w, p.out_elems(), writes);
  int64_t bad_writes = 0, mismatches = 0, first = -1;
  for (size_t i = 0; i < y.size(); ++i) {
    bad_writes += writes[i] != 1;
    if (y[i] != ref[i] && mismatches++ == 0) first = static_cast<int64_t>(i);
  }
  EXPECT_EQ(bad_writes, 0) << "outputs not written exactly once";
  EXPECT_EQ(mismatches, 0) << "first mismatch at " << first << ": " << (first >= 0 ? y[first] : 0) << " vs "
                           << (first >= 0 ? ref[first] : 0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv3dV2Emulation,
                         ::testing::Values(shape(1, 32, 32, 5, 6, 7, 3, 1, 1, 1),   // BN 32, M = 210
                                           shape(1, 64, 64, 9, 7, 6, 3, 2, 2, 2),   // BN 64, stride 2
                                           shape(2, 32, 64, 8, 8, 6, 3, 2, 2, 1),   // (2,2,1), two samples
                                           shape(1, 32, 96, 7, 6, 5, 1, 1, 1, 1),   // 1x1x1, BN 32 x 3
                                           shape(1, 64, 32, 6, 8, 7, 1, 2, 2, 2)), conv_case_name); // 1x1x1 stride 2

}  // namespace
}  // namespace dex

namespace dex {
namespace {

ConvTranspose3dParams tshape(int N, int C, int K, int D, int H, int W, int kw) {
  ConvTranspose3dParams p;
  p.N = N; p.C = C; p.K = K; p.D = D; p.H = H; p.W = W;
  p.KD = p.KH = 2; p.KW = kw;
  p.stride[0] = p.stride[1] = 2; p.stride[2] = kw;
  return p;
}

class ConvTranspose3dV2Emulation : public ::testing::TestWithParam<ConvTranspose3dParams> {};

TEST_P(ConvTranspose3dV2Emulation, MatchesReferenceExactly) {
  const ConvTranspose3dParams p = GetParam();
  const auto x = testing::random_ints(p.in_elems(), 9, -2, 2);
  const auto w = testing::random_ints(p.weight_elems(), 10, -2, 2);
  std::vector<float> ref(static_cast<size_t>(p.out_elems()));
  conv_transpose3d_fprop_cpu(p, x.data(), w.data(), ref.data(), CpuConvImpl::Reference);
  std::vector<int> writes;
  const auto y = emulate_v2(convt_view(p), x, w, p.out_elems(), writes);
  int64_t bad_writes = 0, mismatches = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    bad_writes += writes[i] != 1;
    mismatches += y[i] != ref[i];
  }
  EXPECT_EQ(bad_writes, 0) << "outputs not written exactly once";
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvTranspose3dV2Emulation,
                         ::testing::Values(tshape(1, 64, 32, 5, 3, 7, 2),    // N = 256 (BN 64), M = 105
                                           tshape(2, 32, 16, 3, 4, 5, 1),    // (2,2,1): N = 64
                                           tshape(1, 32, 12, 4, 3, 5, 2)), convt_case_name);  // N = 96: BN 32 x 3

}  // namespace
}  // namespace dex

namespace dex {
namespace {

// dgrad v2 = fprop over dy with w'[c][tap'][k] = w[k][flip(tap')][c] and pad' = k - 1 - pad (stride 1): the identity
// and the repack index (v2::dgrad_weight_src, used by the repack kernel) checked on the CPU reference.
TEST(Conv3dV2Layout, StrideOneDgradIsFpropWithFlippedWeights) {
  for (int k : {3, 1}) {
    Conv3dParams p;
    p.N = 2; p.C = 5; p.K = 7; p.D = 6; p.H = 5; p.W = 4;
    p.KD = p.KH = p.KW = k;
    p.pad[0] = p.pad[1] = p.pad[2] = (k - 1) / 2;
    const auto dy = testing::random_ints(p.out_elems(), 11, -2, 2);
    const auto w = testing::random_ints(p.weight_elems(), 12, -2, 2);
    std::vector<float> ref(static_cast<size_t>(p.in_elems()));
    conv3d_dgrad_cpu(p, dy.data(), w.data(), ref.data(), GradMode::Overwrite, CpuConvImpl::Reference);
    Conv3dParams q = p;
    q.C = p.K; q.K = p.C; q.D = p.OD(); q.H = p.OH(); q.W = p.OW();
    for (int i = 0; i < 3; ++i) q.pad[i] = k - 1 - p.pad[i];
    std::vector<float> wt(w.size());
    const int taps = k * k * k;
    for (int c = 0; c < p.C; ++c)
      for (int tap = 0; tap < taps; ++tap)
        for (int kk = 0; kk < p.K; ++kk)
          wt[(int64_t(c) * taps + tap) * p.K + kk] = w[dgrad_weight_src(c, tap, kk, p.C, k, k, k)];
    std::vector<float> got(ref.size());
    conv3d_fprop_cpu(q, dy.data(), wt.data(), got.data(), CpuConvImpl::Reference);
    EXPECT_EQ(got, ref) << "k = " << k;
  }
}

}  // namespace
}  // namespace dex

// ==== index math of the v2 backward kernels: wgrad (split-voxel GEMM, ldmatrix.trans), strided dgrad (parity
// classes), transposed-conv dgrad / wgrad. Same approach: run the kernels' own maps on the host and compare with the
// CPU reference exactly (integer inputs).
namespace dex {
namespace {

TEST(Conv3dV2Layout, FastDivMatchesDivision) {
  std::vector<uint32_t> divisors;
  for (uint32_t d = 1; d <= 300; ++d) divisors.push_back(d);
  for (uint32_t d : {511u, 512u, 513u, 1000u, 4096u, 65535u, 65536u, 1000003u, 2147483647u, 2147483648u, 4294967295u})
    divisors.push_back(d);
  int64_t bad = 0;
  for (uint32_t d : divisors) {
    const FastDiv f = make_fastdiv(d);
    auto check = [&](uint64_t n) {
      if (n > 0xFFFFFFFFull) return;
      const uint32_t q = fdiv(static_cast<uint32_t>(n), f);
      if (q != static_cast<uint32_t>(n) / d && bad++ < 5) ADD_FAILURE() << n << " / " << d << " gave " << q;
    };
    for (uint64_t n = 0; n < 2000; ++n) check(n);
    for (uint64_t k = 1; k < (uint64_t(1) << 32) / d; k = k * 3 + 1)
      for (int e = -1; e <= 1; ++e) check(k * d + e);
    for (uint64_t n : {0x7FFFFFFFull, 0x80000000ull, 0xFFFFFFFEull, 0xFFFFFFFFull}) check(n);
  }
  EXPECT_EQ(bad, 0);
}

TEST(Conv3dV2Layout, RowSwizzleIsABijectionAndConflictFree) {
  for (int chunks : {4, 8, 16}) {
    const int width = chunks * 8;
    for (int row = 0; row < kWgBV; ++row) {
      std::vector<int> seen(chunks, 0);
      for (int c = 0; c < chunks; ++c) {
        const int off = swz_rows(row, c, chunks) - row * width;
        ASSERT_TRUE(off >= 0 && off < width && off % 8 == 0) << chunks << " " << row << " " << c;
        ++seen[off / 8];
      }
      for (int c = 0; c < chunks; ++c) EXPECT_EQ(seen[c], 1) << "chunks " << chunks << " row " << row;
    }
    // Every ldmatrix.trans phase of the wgrad kernel: 8 rows r0..r0+7 (r0 % 8 == 0), one logical chunk.
    for (int r0 = 0; r0 < kWgBV; r0 += 8)
      for (int c = 0; c < chunks; ++c) {
        int slots = 0;
        for (int r = r0; r < r0 + 8; ++r) slots |= 1 << ((swz_rows(r, c, chunks) * 2 / 16) % 8);
        EXPECT_EQ(slots, 0xFF) << "chunks " << chunks << " rows " << r0 << " chunk " << c;
      }
  }
  // The kernel's ldmatrix.trans lane addresses are phases of that form.
  for (int kk = 0; kk < 2; ++kk)
    for (int i = 0; i < 4; ++i) {
      const int a0 = wg_lda_row(kk, 8 * i), b0 = wg_ldb_row(kk, 8 * i);
      EXPECT_EQ(a0 % 8, 0);
      EXPECT_EQ(b0 % 8, 0);
      for (int l = 8 * i; l < 8 * i + 8; ++l) {
        EXPECT_EQ(wg_lda_row(kk, l), a0 + l - 8 * i);
        EXPECT_EQ(wg_lda_chunk(0, 1, l), wg_lda_chunk(0, 1, 8 * i));
        EXPECT_EQ(wg_ldb_row(kk, l), b0 + l - 8 * i);
        EXPECT_EQ(wg_ldb_chunk(1, l), wg_ldb_chunk(1, 8 * i));
      }
    }
}

TEST(Conv3dV2Layout, WgradSplitCoversTheVoxelsInOrder) {
  for (int64_t L : {1LL, 31LL, 32LL, 255LL, 256LL, 257LL, 4096LL, 262144LL, 2097152LL, 2147483647LL})
    for (int64_t tiles : {1LL, 7LL, 14LL, 68LL, 340LL, 2000LL}) {
      const int64_t target = wgrad_target_ctas(tiles % 2 ? 32 : 64);
      const WgradSplit s = wgrad_split(L, tiles, target);
      EXPECT_EQ(s.chunk % kWgBV, 0);
      EXPECT_GE(s.chunk, kWgMinChunk);
      EXPECT_GE(s.splits, 1);
      EXPECT_LE(s.splits, 65535);
      EXPECT_GE(int64_t(s.splits) * s.chunk, L) << L << " " << tiles;   // covered
      EXPECT_LT(int64_t(s.splits - 1) * s.chunk, L) << L << " " << tiles;  // no empty split
      EXPECT_LE(int64_t(s.splits) * tiles, std::max<int64_t>(target, tiles)) << "more than one wave";
    }
}

// ldmatrix.x4.trans: lane supplies the row address of row (lane % 8) of matrix (lane / 8); afterwards lane holds, in
// register i, elements (2 (lane % 4), lane / 4) and (2 (lane % 4) + 1, lane / 4) of stored matrix i (its transpose).
Frag ldmatrix_x4_trans(const std::vector<float>& smem, const std::array<int, 32>& addr) {
  Frag f{};
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i)
      for (int e = 0; e < 2; ++e) f[lane][i][e] = smem[addr[8 * i + 2 * (lane % 4) + e] + lane / 4];
  return f;
}

// conv3d_wgrad_kernel_v2 + conv3d_wgrad_reduce_kernel on the host: the split plan, the A gather (decoded with
// FastDiv, as on the device), the swizzled tiles, ldmatrix.trans fragments, mma, the partial layout (each element of
// each split written exactly once) and the ordered reduction with its destination map.
std::vector<float> emulate_wgrad_v2(const Conv3dParams& p, const std::vector<float>& x, const std::vector<float>& dy,
                                    bool transposed, int64_t* bad_writes) {
  const int Mtot = static_cast<int>(p.taps()) * p.C, BN = p.K % 64 == 0 ? 64 : 32, kNT = BN / 8, kBCh = BN / 8;
  const int64_t L = p.out_voxels(), W = p.weight_elems();
  const int64_t tiles = (Mtot + kWgBM - 1) / kWgBM * (p.K / BN);
  const WgradSplit sp = wgrad_split(L, tiles, wgrad_target_ctas(BN));
  const FastDiv f_ow = make_fastdiv(p.OW()), f_oh = make_fastdiv(p.OH()), f_od = make_fastdiv(p.OD());
  std::vector<float> part(static_cast<size_t>(sp.splits * W), -12345.f);
  std::vector<int> writes(part.size(), 0);
  std::vector<float> sA(kWgBV * kWgBM), sB(kWgBV * BN);
  for (int z = 0; z < sp.splits; ++z)
    for (int bx = 0; bx * kWgBM < Mtot; ++bx)
      for (int by = 0; by < p.K / BN; ++by) {
        const int m_base = bx * kWgBM, n_base = by * BN;
        const int64_t v_lo = z * sp.chunk, v_hi = std::min(L, v_lo + sp.chunk);
        const int KT = static_cast<int>((v_hi - v_lo + kWgBV - 1) / kWgBV);
        std::vector<std::array<std::array<double, 4>, 32>> acc(4 * 2 * kNT);
        for (auto& a : acc)
          for (auto& l : a) l.fill(0);
        for (int kt = 0; kt < KT; ++kt) {
          std::fill(sA.begin(), sA.end(), -999.f);
          std::fill(sB.begin(), sB.end(), -999.f);
          const int64_t v0 = v_lo + int64_t(kt) * kWgBV;
          for (int tid = 0; tid < 128; ++tid) {
            for (int j = 0; j < 4; ++j) {
              const int row = wg_a_row(tid), ch = wg_a_chunk(tid, j), col = m_base + ch * 8;
              const int64_t v = v0 + row;
              int64_t src = -1;
              if (col < Mtot && v < v_hi) {
                const int tap = col / p.C, c = col % p.C;
                const int t = tap / (p.KH * p.KW), r = (tap / p.KW) % p.KH, s = tap % p.KW;
                const uint32_t vv = uint32_t(v), q1 = fdiv(vv, f_ow), q2 = fdiv(q1, f_oh), q3 = fdiv(q2, f_od);
                const int ow = int(vv - q1 * p.OW()), oh = int(q1 - q2 * p.OH()), od = int(q2 - q3 * p.OD());
                const int iz = od * p.stride[0] - p.pad[0] + t * p.dil[0];
                const int iy = oh * p.stride[1] - p.pad[1] + r * p.dil[1];
                const int ix = ow * p.stride[2] - p.pad[2] + s * p.dil[2];
                if (iz >= 0 && iz < p.D && iy >= 0 && iy < p.H && ix >= 0 && ix < p.W)
                  src = (((int64_t(q3) * p.D + iz) * p.H + iy) * p.W + ix) * p.C + c;
              }
              for (int e = 0; e < 8; ++e) sA[swz_rows(row, ch, 16) + e] = src >= 0 ? x[src + e] : 0.f;
            }
            for (int j = 0; j < BN / 32; ++j) {
              const int idx = tid + 128 * j, row = wg_b_row(idx, BN), ch = wg_b_chunk(idx, BN);
              const int64_t v = v0 + row;
              for (int e = 0; e < 8; ++e)
                sB[swz_rows(row, ch, kBCh) + e] = v < v_hi ? dy[v * p.K + n_base + ch * 8 + e] : 0.f;
            }
          }
          for (int warp = 0; warp < 4; ++warp)
            for (int kk = 0; kk < 2; ++kk) {
              Frag af[2], bf[4];
              for (int mi = 0; mi < 2; ++mi) {
                std::array<int, 32> addr;
                for (int l = 0; l < 32; ++l) addr[l] = swz_rows(wg_lda_row(kk, l), wg_lda_chunk(warp * 32, mi, l), 16);
                af[mi] = ldmatrix_x4_trans(sA, addr);
              }
              for (int nj = 0; nj < kNT / 2; ++nj) {
                std::array<int, 32> addr;
                for (int l = 0; l < 32; ++l) addr[l] = swz_rows(wg_ldb_row(kk, l), wg_ldb_chunk(nj, l), kBCh);
                bf[nj] = ldmatrix_x4_trans(sB, addr);
              }
              for (int mi = 0; mi < 2; ++mi)
                for (int ni = 0; ni < kNT; ++ni)
                  mma_16816(acc[(warp * 2 + mi) * kNT + ni], af[mi], 0, bf[ni / 2], (ni & 1) * 2);
            }
        }
        for (int warp = 0; warp < 4; ++warp)
          for (int mi = 0; mi < 2; ++mi)
            for (int ni = 0; ni < kNT; ++ni)
              for (int lane = 0; lane < 32; ++lane)
                for (int q = 0; q < 4; ++q) {
                  const int m = m_base + acc_row(warp * 32, mi, lane, q);
                  if (m >= Mtot) continue;
                  const int64_t o = z * W + int64_t(n_base + acc_col(ni, lane, q)) * Mtot + m;
                  part[o] = static_cast<float>(acc[(warp * 2 + mi) * kNT + ni][lane][q]);
                  ++writes[o];
                }
      }
  *bad_writes = 0;
  for (int w : writes) *bad_writes += w != 1;
  std::vector<float> dw(static_cast<size_t>(W), -12345.f);
  std::vector<int> dst_writes(dw.size(), 0);
  for (int64_t i = 0; i < W; ++i) {
    double s = 0;
    for (int z = 0; z < sp.splits; ++z) s += part[z * W + i];
    const int64_t o = wgrad_dst(i, p.K, static_cast<int>(p.taps()), p.C, transposed);
    dw[o] = static_cast<float>(s);
    ++dst_writes[o];
  }
  for (int w : dst_writes) *bad_writes += w != 1;
  return dw;
}

class Conv3dWgradV2Emulation : public ::testing::TestWithParam<Conv3dParams> {};

TEST_P(Conv3dWgradV2Emulation, MatchesReferenceExactly) {
  const Conv3dParams p = GetParam();
  const auto x = testing::random_ints(p.in_elems(), 21, -2, 2);
  const auto dy = testing::random_ints(p.out_elems(), 22, -2, 2);
  std::vector<float> ref(static_cast<size_t>(p.weight_elems()));
  conv3d_wgrad_cpu(p, x.data(), dy.data(), ref.data(), GradMode::Overwrite, CpuConvImpl::Reference);
  int64_t bad = 0;
  const auto got = emulate_wgrad_v2(p, x, dy, false, &bad);
  EXPECT_EQ(bad, 0) << "partials / dw not written exactly once";
  EXPECT_EQ(got, ref);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv3dWgradV2Emulation,
                         ::testing::Values(shape(1, 32, 32, 8, 8, 8, 3, 1, 1, 1),    // M = 864 (ragged), 2 splits
                                           shape(1, 32, 64, 9, 7, 6, 3, 2, 2, 2),    // BN 64, stride 2, odd extents
                                           shape(2, 32, 32, 8, 8, 6, 3, 2, 2, 1),    // (2,2,1), two samples
                                           shape(1, 32, 96, 7, 6, 5, 1, 1, 1, 1),    // 1x1x1, BN 32 x 3
                                           shape(1, 64, 32, 6, 8, 7, 1, 2, 2, 2),    // 1x1x1 stride 2
                                           shape(1, 32, 32, 17, 16, 16, 3, 1, 1, 1)),  // 4352 voxels: 17 splits
                         conv_case_name);

TEST(Conv3dV2Layout, DgradRepackIsABijectionPerClass) {
  for (int k : {1, 3})
    for (int s0 : {1, 2})
      for (int s2 : {1, 2}) {
        Conv3dParams p = shape(1, 3, 5, 9, 8, 7, k, s0, s0, s2);
        const int kk[3] = {p.KD, p.KH, p.KW};
        const DgradPlan q = make_dgrad_plan(p.D, p.H, p.W, p.C, p.K, kk, p.stride, p.pad);
        std::vector<int> hit(static_cast<size_t>(p.weight_elems()), 0);
        for (int kc = 0; kc < p.K; ++kc)
          for (int tap = 0; tap < p.taps(); ++tap)
            for (int c = 0; c < p.C; ++c) {
              const int64_t d = dgrad_repack_dst(q, kc, tap, c, p.K);
              ASSERT_TRUE(d >= 0 && d < p.weight_elems()) << d;
              ++hit[d];
            }
        for (int h : hit) ASSERT_EQ(h, 1) << "k " << k << " s " << s0 << s2;
        int64_t taps = 0;
        for (int cls = 0; cls < q.classes; ++cls) taps += q.T(cls);
        EXPECT_EQ(taps, p.taps());
      }
}

// Strided (and stride-1) dgrad v2: one emulated fprop GEMM per parity class over dy, with the class's pad', taps and
// repacked weights and the class_out_row epilogue; together they must write every dx element exactly once (classes
// without taps write zeros) and equal the reference.
std::vector<float> emulate_dgrad_v2(const Conv3dParams& p, const std::vector<float>& dy, const std::vector<float>& w,
                                    std::vector<int>& writes) {
  const int kk[3] = {p.KD, p.KH, p.KW};
  const DgradPlan q = make_dgrad_plan(p.D, p.H, p.W, p.C, p.K, kk, p.stride, p.pad);
  std::vector<float> wt(w.size(), -777.f);
  for (int kc = 0; kc < p.K; ++kc)
    for (int tap = 0; tap < p.taps(); ++tap)
      for (int c = 0; c < p.C; ++c) wt[dgrad_repack_dst(q, kc, tap, c, p.K)] = w[(int64_t(kc) * p.taps() + tap) * p.C + c];
  std::vector<float> y(static_cast<size_t>(p.in_elems()), -12345.f);
  writes.assign(y.size(), 0);
  for (int cls = 0; cls < q.classes; ++cls) {
    const int r[3] = {q.cls_r(cls, 0), q.cls_r(cls, 1), q.cls_r(cls, 2)};
    int J[3], T[3], pd[3];
    for (int i = 0; i < 3; ++i) {
      J[i] = q.ax[i].J[r[i]];
      T[i] = q.ax[i].T[r[i]];
      pd[i] = q.ax[i].pad[r[i]];
    }
    if (J[0] == 0 || J[1] == 0 || J[2] == 0) continue;
    const int T3 = T[0] * T[1] * T[2];
    const int OD = p.OD(), OH = p.OH(), OW = p.OW();
    const int64_t off = q.off[cls];
    GemmView g;
    g.M = int64_t(p.N) * J[0] * J[1] * J[2];
    g.N = p.C;
    g.KT = T3 * (p.K / kBK);
    g.a_src = [=](int64_t m, int kt, int chunk) -> int64_t {
      int u, c0;
      kstep(kt, p.K, &u, &c0);
      const int u0 = u / (T[1] * T[2]), u1 = (u / T[2]) % T[1], u2 = u % T[2];
      int64_t rem = m;
      const int j2 = int(rem % J[2]); rem /= J[2];
      const int j1 = int(rem % J[1]); rem /= J[1];
      const int j0 = int(rem % J[0]);
      const int n = int(rem / J[0]);
      const int iz = j0 - pd[0] + u0, iy = j1 - pd[1] + u1, ix = j2 - pd[2] + u2;
      if (iz < 0 || iz >= OD || iy < 0 || iy >= OH || ix < 0 || ix >= OW) return -1;
      return (((int64_t(n) * OD + iz) * OH + iy) * OW + ix) * p.K + c0 + chunk * 8;
    };
    g.b_src = [=](int n, int kt, int chunk) -> int64_t {
      int u, c0;
      kstep(kt, p.K, &u, &c0);
      return off + (int64_t(n) * T3 + u) * p.K + c0 + chunk * 8;
    };
    g.out = [=](int64_t m, int col) {
      return class_out_row(m, J[0], J[1], J[2], p.D, p.H, p.W, p.stride[0], p.stride[1], p.stride[2], r[0], r[1], r[2]) *
                 p.C + col;
    };
    emulate_v2_into(g, dy, wt, y, writes);
  }
  return y;
}

class Conv3dDgradV2Emulation : public ::testing::TestWithParam<Conv3dParams> {};

TEST_P(Conv3dDgradV2Emulation, MatchesReferenceExactly) {
  const Conv3dParams p = GetParam();
  const auto dy = testing::random_ints(p.out_elems(), 31, -2, 2);
  const auto w = testing::random_ints(p.weight_elems(), 32, -2, 2);
  std::vector<float> ref(static_cast<size_t>(p.in_elems()));
  conv3d_dgrad_cpu(p, dy.data(), w.data(), ref.data(), GradMode::Overwrite, CpuConvImpl::Reference);
  std::vector<int> writes;
  const auto got = emulate_dgrad_v2(p, dy, w, writes);
  int64_t bad = 0, mism = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    bad += writes[i] != 1;
    if (got[i] != ref[i] && mism++ == 0) first = int64_t(i);
  }
  EXPECT_EQ(bad, 0) << "dx elements not written exactly once";
  EXPECT_EQ(mism, 0) << "first mismatch at " << first;
}

Conv3dParams with_pad(Conv3dParams p, int pad) {
  p.pad[0] = p.pad[1] = p.pad[2] = pad;
  return p;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv3dDgradV2Emulation,
                         ::testing::Values(shape(1, 32, 32, 5, 6, 7, 3, 1, 1, 1),          // stride 1: one class
                                           shape(1, 64, 32, 9, 7, 6, 3, 2, 2, 2),          // 8 classes, odd + even
                                           shape(2, 32, 64, 8, 8, 6, 3, 2, 2, 1),          // (2,2,1): 4 classes
                                           shape(1, 32, 32, 8, 6, 7, 1, 2, 2, 2),          // 1x1x1 s2: 7 zero classes
                                           shape(1, 32, 32, 7, 6, 5, 1, 1, 1, 1),          // 1x1x1 s1
                                           with_pad(shape(1, 32, 32, 9, 8, 7, 3, 2, 2, 2), 0)),  // no padding
                         conv_case_name);

// Transposed conv dgrad v2 = conv3d fprop over dy (kernel = stride) with weights w'[c][tap][k] = w[k][tap][c];
// wgrad v2 = the conv3d wgrad emulation with x and dy swapped and the transposed destination map.
Conv3dParams convt_as_conv3d(const ConvTranspose3dParams& p) {
  Conv3dParams q;
  q.N = p.N; q.C = p.K; q.K = p.C; q.D = p.OD(); q.H = p.OH(); q.W = p.OW();
  q.KD = p.KD; q.KH = p.KH; q.KW = p.KW;
  for (int i = 0; i < 3; ++i) q.stride[i] = p.stride[i];
  return q;
}

class ConvTranspose3dBwdV2Emulation : public ::testing::TestWithParam<ConvTranspose3dParams> {};

TEST_P(ConvTranspose3dBwdV2Emulation, DgradMatchesReferenceExactly) {
  const ConvTranspose3dParams p = GetParam();
  const auto dy = testing::random_ints(p.out_elems(), 41, -2, 2);
  const auto w = testing::random_ints(p.weight_elems(), 42, -2, 2);
  std::vector<float> ref(static_cast<size_t>(p.in_elems()));
  conv_transpose3d_dgrad_cpu(p, dy.data(), w.data(), ref.data(), GradMode::Overwrite, CpuConvImpl::Reference);
  const Conv3dParams q = convt_as_conv3d(p);
  ASSERT_EQ(q.OD(), p.D);
  ASSERT_EQ(q.OW(), p.W);
  const int taps = static_cast<int>(p.taps());
  std::vector<float> wt(w.size());
  for (int c = 0; c < p.C; ++c)
    for (int tap = 0; tap < taps; ++tap)
      for (int k = 0; k < p.K; ++k) wt[(int64_t(c) * taps + tap) * p.K + k] = w[convt_dgrad_weight_src(c, tap, k, p.C, taps)];
  std::vector<int> writes;
  const auto got = emulate_v2(fprop_view(q), dy, wt, q.out_elems(), writes);
  int64_t bad = 0;
  for (int n : writes) bad += n != 1;
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(got, ref);
}

TEST_P(ConvTranspose3dBwdV2Emulation, WgradMatchesReferenceExactly) {
  const ConvTranspose3dParams p = GetParam();
  const auto x = testing::random_ints(p.in_elems(), 43, -2, 2);
  const auto dy = testing::random_ints(p.out_elems(), 44, -2, 2);
  std::vector<float> ref(static_cast<size_t>(p.weight_elems()));
  conv_transpose3d_wgrad_cpu(p, x.data(), dy.data(), ref.data(), GradMode::Overwrite, CpuConvImpl::Reference);
  int64_t bad = 0;
  const auto got = emulate_wgrad_v2(convt_as_conv3d(p), dy, x, true, &bad);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(got, ref);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvTranspose3dBwdV2Emulation,
                         ::testing::Values(tshape(1, 64, 32, 5, 3, 7, 2),   // 2x2x2, M = 105
                                           tshape(2, 32, 32, 3, 4, 5, 1),   // (2,2,1), two samples
                                           tshape(1, 32, 64, 4, 4, 4, 2)),  // K = 64
                         convt_case_name);

}  // namespace
}  // namespace dex
