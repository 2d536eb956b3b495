// The split (whole-GPU) reductions (kernels/cuda/reduce_split.h, instance_norm.cu, bias_add.cu, dice_ce.cu) and the
// device finite check (finite.cu).
//
// CPU-side (run everywhere): the chunk plan (covers every voxel once, no empty chunk, ragged last chunk, fixed by the
// problem only), and the statistics math the kernels run, emulated in the kernels' summation order
// (split::shifted_sums_split + split::norm_stats) against a long double two-pass reference. Tolerances: the double
// sums of S terms carry <= (S/32 + 32 + chunks) * 2^-53 relative error each (sequential runs of S/(32 chunks) terms, 32
// rows, the chunks; all magnitudes below sum |d| and sum d^2); the variance s2/S - m^2 amplifies that by
// 1 + m^2 / var, m = mean - K. With |m| <= 4 std for the data below that is <= 17 * 3 * 2^-53 * (S/32 + 32 + chunks);
// we check 1e-12 relative (>= 20x that bound at S = 2^21) for the variance and the mean (relative to std). Integer
// data sums exactly in double, so the split sums must equal the unsplit ones bit for bit.
//
// GPU rows (skip without a GPU, saying why): the table harness (backend_op_table.h: NaN poison, guard bands,
// determinism) at sizes with several chunks and a ragged last chunk, N = 2, S = 33 x 35 x 37, C = 3, 32, 64 for
// instance norm fwd / bwd (f32, f16, bf16 storage; tolerances as test_backend_ops16.cpp derives them), bias_add bwd
// and dice_ce; the explicit-workspace entry point bitwise equal to the default one, v1 within 4 u_f32 of it; all_finite_cuda on inf / nan at the first, a middle and the last element.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_runtime.h"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/reduce_split.h"
#include "kernels/cuda/split_cuda.h"
#include "tests/cuda/backend_op_table.h"
#include "tests/testing.h"

namespace dex {
namespace {

using namespace op_table;

// ---- CPU-side: the plan ----------------------------------------------------------------------------------------------
void expect_plan_covers(int64_t S, int64_t other) {
  const split::Plan p = split::make_plan(S, other);
  SCOPED_TRACE(str("S=", S, " other_blocks=", other, " chunks=", p.chunks, " chunk_len=", p.chunk_len));
  ASSERT_GE(p.chunks, 1);
  ASSERT_LE(p.chunks, split::kMaxChunks);
  int64_t next = 0;
  for (int k = 0; k < p.chunks; ++k) {
    int64_t b, e;
    split::chunk_range(p, S, k, &b, &e);
    EXPECT_EQ(b, next) << "chunk " << k << " does not start where the previous one ended";
    EXPECT_GT(e, b) << "chunk " << k << " is empty";
    EXPECT_LE(e - b, p.chunk_len);
    next = e;
  }
  EXPECT_EQ(next, S) << "the chunks do not end at S";
}

TEST(ReduceSplitPlan, ChunksCoverEveryVoxelOnceWithoutEmptyChunks) {
  for (int64_t S : {int64_t(1), int64_t(255), int64_t(256), int64_t(257), int64_t(33 * 35 * 37), int64_t(7 * 33 * 35 * 37),
                    int64_t(128) * 128 * 128, int64_t(96) * 96 * 96 * 4 + 3})
    for (int64_t other : {int64_t(1), int64_t(2), int64_t(3), int64_t(20), int64_t(600), int64_t(100000)})
      expect_plan_covers(S, other);
}

TEST(ReduceSplitPlan, BigProblemsGetEnoughBlocksAndTheTestSizesAreRagged) {
  // 32 ch x 128^3, batch 1 (one channel group): ~kTargetBlocks chunks, not one block.
  const split::Plan big = split::make_plan(int64_t(128) * 128 * 128, 1);
  EXPECT_GE(big.chunks, 512);
  EXPECT_LE(big.chunks, split::kTargetBlocks);
  // The GPU rows' size (S = 33*35*37, N = 2, C = 3 / 32 / 64): several chunks, the last one shorter.
  const int64_t S = 33 * 35 * 37;
  for (int groups : {1, 2}) {
    const split::Plan p = split::make_plan(S, int64_t(groups) * 2);
    EXPECT_GE(p.chunks, 8) << "groups " << groups;
    int64_t b, e;
    split::chunk_range(p, S, p.chunks - 1, &b, &e);
    EXPECT_LT(e - b, p.chunk_len) << "groups " << groups << ": last chunk is not ragged";
  }
  // A function of the problem only: the same arguments, the same plan.
  const split::Plan again = split::make_plan(int64_t(128) * 128 * 128, 1);
  EXPECT_EQ(again.chunks, big.chunks);
  EXPECT_EQ(again.chunk_len, big.chunk_len);
  // Tiny problems: one chunk, never an empty one.
  EXPECT_EQ(split::make_plan(100, 1).chunks, 1);
}

// ---- CPU-side: the statistics math in the kernels' order ---------------------------------------------------------
struct RefStats {
  long double mean, var;
};
RefStats two_pass(const std::vector<float>& x) {
  long double s = 0;
  for (float v : x) s += v;
  const long double mu = s / x.size();
  long double m2 = 0;
  for (float v : x) m2 += (v - mu) * (v - mu);
  return {mu, m2 / x.size()};
}

TEST(ReduceSplitMath, ShiftedSplitStatsMatchLongDoubleTwoPass) {
  const int64_t S = int64_t(1) << 21;  // 128^3 voxels: the DynUNet's biggest layers
  const split::Plan plan = split::make_plan(S, 1);
  // Offsets up to 5e4 x the spread: the shift keeps the cancellation small (unshifted sums would lose ~(mean/std)^2).
  for (float offset : {0.0f, 3.0f, 1000.0f, -50000.0f}) {
    SCOPED_TRACE(str("offset ", offset));
    std::vector<float> x = testing::random_vector(S, 1234 + static_cast<uint64_t>(std::fabs(offset)), -1.f, 1.f);
    for (auto& v : x) v += offset;
    const RefStats ref = two_pass(x);
    double s1, s2;
    split::shifted_sums_split(plan, S, 32, double(x[0]), [&](int64_t v) { return x[v]; }, &s1, &s2);
    double mean, rstd;
    split::norm_stats(S, double(x[0]), s1, s2, 0.0, &mean, &rstd);
    const double var = 1.0 / (rstd * rstd);
    const double sd = std::sqrt(double(ref.var));
    EXPECT_LE(std::fabs(mean - double(ref.mean)) / sd, 1e-12) << "mean " << mean << " vs " << double(ref.mean);
    EXPECT_LE(std::fabs(var - double(ref.var)) / double(ref.var), 1e-12) << "var " << var << " vs " << double(ref.var);
  }
}

TEST(ReduceSplitMath, IntegerDataSumsExactlyAcrossRaggedChunks) {
  // Small integers: every partial and total is exact in double, so the split order must give exactly the unsplit sums
  // (a dropped or doubled voxel, or a wrong chunk boundary, changes them).
  const int64_t S = 33 * 35 * 37;
  const std::vector<float> x = testing::random_ints(S, 77, -5, 7);
  for (int64_t other : {int64_t(1), int64_t(4), int64_t(6)}) {
    const split::Plan plan = split::make_plan(S, other);
    ASSERT_GT(plan.chunks, 1);
    const double K = x[0];
    double s1, s2;
    split::shifted_sums_split(plan, S, 32, K, [&](int64_t v) { return x[v]; }, &s1, &s2);
    double d1 = 0, d2 = 0;
    for (float v : x) {
      d1 += v - K;
      d2 += (v - K) * (v - K);
    }
    EXPECT_EQ(s1, d1) << "other_blocks " << other;
    EXPECT_EQ(s2, d2) << "other_blocks " << other;
  }
}

TEST(ReduceSplitMath, NormStatsClampsNegativeVarianceFromRounding) {
  // A constant channel: var is 0 up to rounding; rstd must be 1/sqrt(eps), never nan.
  double mean, rstd;
  split::norm_stats(1000, 2.5, 1e-17, 0.0, 1e-5, &mean, &rstd);
  EXPECT_EQ(mean, 2.5 + 1e-20);
  EXPECT_DOUBLE_EQ(rstd, 1.0 / std::sqrt(1e-5));
}

TEST(ReduceSplitFinite, CpuBackendHasNoDeviceCheck) {
  // The host loop in grads_all_finite stays the CPU path; only device backends fill the entry.
  EXPECT_EQ(backend(Device::CPU).all_finite, nullptr);
  std::string why;
  if (!backend_available(Device::CUDA, &why)) GTEST_SKIP() << "CUDA backend not available: " << why;
  EXPECT_NE(backend(Device::CUDA).all_finite, nullptr);
}

// ---- GPU rows ---------------------------------------------------------------------------------------------------------
double nmse16(DType t) { return t == DType::F16 ? 1e-6 : t == DType::BF16 ? 3e-5 : 1e-12; }
void round_all(DType t, std::vector<float>& v) {
  for (auto& x : v) x = round_to(t, x);
}
constexpr double kR4 = 4 * kU32;

std::vector<OpCase> split_rows() {
  std::vector<OpCase> rows;
  const int64_t vox_s = 33 * 35 * 37;
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (int C : {3, 32, 64}) {
      InstanceNormParams p;
      p.N = 2; p.C = C; p.S = vox_s; p.affine = true;
      const int64_t n = p.N * p.S * p.C, nc = p.N * p.C;
      const std::string tag = str(dt(t), "/C", C);
      // Forward, shifted inputs (mean 3): y and, in a separate row, the fp32 statistics.
      std::vector<In> ins = {{t, n, 2.f, 4.f}, {DType::F32, p.C}, {DType::F32, p.C}};
      auto cpu = [p, t](const HostIn& in, HostIn& out) {
        instance_norm_fwd_cpu(p, in[0].data(), in[1].data(), in[2].data(), out[0].data(), out[1].data(),
                              out[2].data());
        round_all(t, out[0]);
        return Scalars{};
      };
      auto gpu = [p, t](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
        instance_norm_fwd_cuda(p, t, in[0], cin<float>(in[1]), cin<float>(in[2]), out[0], cout_<float>(out[1]),
                               cout_<float>(out[2]), S(s));
        return Scalars{};
      };
      rows.push_back({str("split/instance_norm_fwd/", tag, "/y"), ins,
                      {{t, n}, {DType::F32, nc, false, -1, 1, -1, 1, false}, {DType::F32, nc, false, -1, 1, -1, 1, false}},
                      cpu, gpu, tol(t, double(p.S)), nmse16(t), false, 0, 141});
      rows.push_back({str("split/instance_norm_fwd/", tag, "/stats"), ins,
                      {{t, n, false, -1, 1, -1, 1, false}, {DType::F32, nc}, {DType::F32, nc}}, cpu, gpu, kR4, 1e-12,
                      false, 0, 142});
      // Backward, affine, Accumulate: dx and (separate row) dgamma / dbeta.
      std::vector<In> bins = {{t, n}, {t, n}, {DType::F32, nc, -0.5f, 0.5f}, {DType::F32, nc, 0.5f, 2.f},
                              {DType::F32, p.C}};
      auto bcpu = [p, t](const HostIn& in, HostIn& out) {
        instance_norm_bwd_cpu(p, in[0].data(), in[1].data(), in[2].data(), in[3].data(), in[4].data(), out[0].data(),
                              out[1].data(), out[2].data(), GradMode::Accumulate);
        round_all(t, out[0]);
        return Scalars{};
      };
      auto bgpu = [p, t](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
        instance_norm_bwd_cuda(p, t, in[0], in[1], cin<float>(in[2]), cin<float>(in[3]), cin<float>(in[4]), out[0],
                               cout_<float>(out[1]), cout_<float>(out[2]), GradMode::Accumulate, S(s));
        return Scalars{};
      };
      rows.push_back({str("split/instance_norm_bwd/", tag, "/dx"), bins,
                      {{t, n, true}, {DType::F32, p.C, true, -1, 1, -1, 1, false},
                       {DType::F32, p.C, true, -1, 1, -1, 1, false}},
                      bcpu, bgpu, tol(t, double(p.S) + 1), nmse16(t), false, 0, 143});
      rows.push_back({str("split/instance_norm_bwd/", tag, "/dparams"), bins,
                      {{t, n, true, -1, 1, -1, 1, false}, {DType::F32, p.C, true}, {DType::F32, p.C, true}}, bcpu, bgpu,
                      kR4, 1e-12, false, 0, 144});
      // bias_add bwd over all N*S voxels: integers exact, random within 4 u_f32.
      const int64_t vox = p.N * p.S;
      rows.push_back({str("split/bias_add_bwd/", tag), {{t, vox * C}}, {{DType::F32, C, true}},
                      [=](const HostIn& in, HostIn& out) {
                        bias_add_bwd_cpu(vox, C, in[0].data(), out[0].data());
                        return Scalars{};
                      },
                      [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                        bias_add_bwd_cuda(vox, C, t, in[0], cout_<float>(out[0]), S(s));
                        return Scalars{};
                      },
                      kR4, 1e-12, true, 0, 145});
    }
    // dice_ce with the bundle's 3 classes (background, spleen, ... as out_channels) over several chunks per sample.
    DiceCEParams dp;
    dp.N = 2; dp.C = 3; dp.S = vox_s;
    const int64_t nz = dp.N * dp.S * dp.C;
    rows.push_back({str("split/dice_ce_fwd_bwd/", dt(t)), {{t, nz, -3.f, 3.f}, {DType::U8, dp.N * dp.S, 0, 0, 0, 2}},
                    {{t, nz}},
                    [dp, t](const HostIn& in, HostIn& out) {
                      std::vector<uint8_t> tg(in[1].begin(), in[1].end());
                      auto r = dice_ce_fwd_bwd_cpu(dp, in[0].data(), tg.data(), out[0].data(), 256.f);
                      round_all(t, out[0]);
                      return Scalars{r.loss, r.dice, r.ce};
                    },
                    [dp, t](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                      auto r = dice_ce_fwd_bwd_cuda(dp, t, in[0], cin<uint8_t>(in[1]), out[0], 256.f, S(s));
                      return Scalars{r.loss, r.dice, r.ce};
                    },
                    tol(t, double(dp.S)), nmse16(t), false, 1e-12, 146});
  }
  return rows;
}

const std::vector<OpCase>& table() {
  static const std::vector<OpCase> rows = split_rows();
  return rows;
}

class ReduceSplitRows : public ::testing::TestWithParam<size_t> {};

TEST_P(ReduceSplitRows, MatchesCpuReference) {
  run_cuda_row(table()[GetParam()]);
}

INSTANTIATE_TEST_SUITE_P(Split, ReduceSplitRows, ::testing::Range<size_t>(0, table().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) { return param_name(table()[info.param].name); });

// ---- GPU: explicit workspace, v1 agreement, the finite check -------------------------------------------------------
template <class T>
std::vector<T> download(const Buffer& b, size_t n) {
  std::vector<T> h(n);
  DEX_CUDA_CHECK(cudaMemcpy(h.data(), b.data(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}
Buffer upload(const void* src, size_t bytes) {
  Buffer b(cuda_allocator(), bytes);
  DEX_CUDA_CHECK(cudaMemcpy(b.data(), src, bytes, cudaMemcpyHostToDevice));
  return b;
}

TEST(ReduceSplitGpu, ExplicitWorkspaceEqualsDefaultAndV1AgreesWithin4Ulp) {
  std::string why;
  if (!backend_available(Device::CUDA, &why)) GTEST_SKIP() << "CUDA backend not available: " << why;
  InstanceNormParams p;
  p.N = 2; p.C = 32; p.S = 33 * 35 * 37; p.affine = false;
  const size_t n = size_t(p.N) * p.S * p.C, nc = size_t(p.N) * p.C;
  std::vector<float> hx = testing::random_vector(int64_t(n), 9, 2.f, 4.f), hdy = testing::random_vector(int64_t(n), 10);
  Buffer x = upload(hx.data(), n * 4), dy = upload(hdy.data(), n * 4);
  Buffer y1(cuda_allocator(), n * 4), y2(cuda_allocator(), n * 4), y3(cuda_allocator(), n * 4);
  Buffer st(cuda_allocator(), 6 * nc * 4);
  float* m = st.as<float>();
  Buffer ws(cuda_allocator(), instance_norm_workspace_bytes_cuda(p));
  instance_norm_fwd_cuda(p, DType::F32, x.data(), nullptr, nullptr, y1.data(), m, m + nc);
  instance_norm_fwd_split_cuda(p, DType::F32, x.data(), nullptr, nullptr, y2.data(), m + 2 * nc, m + 3 * nc, ws.data(),
                               nullptr);
  instance_norm_fwd_v1_cuda(p, DType::F32, x.data(), nullptr, nullptr, y3.data(), m + 4 * nc, m + 5 * nc, nullptr);
  DEX_CUDA_CHECK(cudaDeviceSynchronize());
  const auto a = download<float>(y1, n), b = download<float>(y2, n), c = download<float>(y3, n);
  const auto s = download<float>(st, 6 * nc);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), n * 4)) << "explicit workspace differs from the default entry point";
  EXPECT_EQ(0, std::memcmp(s.data(), s.data() + 2 * nc, 2 * nc * 4));
  // v1 (exact two-pass) and split (shifted single pass) differ only in double rounding: fp32 results within 4 ulp.
  const auto cmp = testing::compare(c.data(), a.data(), int64_t(n), kR4, kR4 * testing::rms(std::vector<double>(a.begin(), a.end())), 1e-12);
  EXPECT_TRUE(cmp.ok) << cmp.message;
  const auto cmps = testing::compare(s.data() + 4 * nc, s.data(), int64_t(2 * nc), kR4, 0, 1e-12);
  EXPECT_TRUE(cmps.ok) << cmps.message;
}

TEST(ReduceSplitGpu, StreamWorkspaceIsPerStreamAndGrowOnly) {
  std::string why;
  if (!backend_available(Device::CUDA, &why)) GTEST_SKIP() << "CUDA backend not available: " << why;
  cudaStream_t s1 = nullptr, s2 = nullptr;
  DEX_CUDA_CHECK(cudaStreamCreate(&s1));
  DEX_CUDA_CHECK(cudaStreamCreate(&s2));
  void* a = stream_workspace(s1, 1000);
  void* b = stream_workspace(s2, 1000);
  EXPECT_NE(a, b) << "two streams must not share a workspace (their ops may run at the same time)";
  EXPECT_EQ(stream_workspace(s1, 10), a) << "a smaller request reuses the block";
  void* big = stream_workspace(s1, size_t(1) << 20);
  ASSERT_NE(big, nullptr);
  DEX_CUDA_CHECK(cudaMemsetAsync(big, 0, size_t(1) << 20, s1));  // the whole grown block is usable
  DEX_CUDA_CHECK(cudaMemsetAsync(a, 0, 1000, s1));                // and the old one is still alive
  DEX_CUDA_CHECK(cudaStreamSynchronize(s1));
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
}

TEST(ReduceSplitGpu, AllFiniteFindsInfAndNanAnywhere) {
  std::string why;
  if (!backend_available(Device::CUDA, &why)) GTEST_SKIP() << "CUDA backend not available: " << why;
  const int64_t n = 1000003;  // ragged for any block size; more than one grid-stride round
  std::vector<float> h = testing::random_vector(n, 5, -1e30f, 1e30f);
  h[7] = std::numeric_limits<float>::max();
  h[8] = -std::numeric_limits<float>::max();
  h[9] = std::numeric_limits<float>::denorm_min();
  Buffer d = upload(h.data(), size_t(n) * 4);
  EXPECT_TRUE(all_finite_cuda(d.as<float>(), n)) << "large and subnormal finite values are finite";
  EXPECT_TRUE(all_finite_cuda(d.as<float>(), 0)) << "the empty set is finite";
  const float bad[] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                       std::numeric_limits<float>::quiet_NaN()};
  for (float v : bad)
    for (int64_t at : {int64_t(0), n / 2 + 1, n - 1}) {
      float old = h[at];
      DEX_CUDA_CHECK(cudaMemcpy(d.as<float>() + at, &v, 4, cudaMemcpyHostToDevice));
      EXPECT_FALSE(all_finite_cuda(d.as<float>(), n)) << v << " at " << at;
      EXPECT_FALSE(backend(Device::CUDA).all_finite(d.as<float>(), n, nullptr)) << v << " at " << at << " (table)";
      DEX_CUDA_CHECK(cudaMemcpy(d.as<float>() + at, &old, 4, cudaMemcpyHostToDevice));
    }
  // A bad value just past n is not looked at.
  const float inf = std::numeric_limits<float>::infinity();
  DEX_CUDA_CHECK(cudaMemcpy(d.as<float>() + n - 1, &inf, 4, cudaMemcpyHostToDevice));
  EXPECT_TRUE(all_finite_cuda(d.as<float>(), n - 1));
}

}  // namespace
}  // namespace dex
