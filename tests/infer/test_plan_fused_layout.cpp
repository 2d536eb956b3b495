// The fused fp16 kernels' index math and arithmetic (infer/plan_conv_fused.h), on the CPU: the functions the kernels
// call, checked exhaustively or against plain double computations, then a tile-by-tile emulation of the fused conv
// built from them (the Direct kernel's loops: prologue with zero padding, two operands, the projection on the centre
// tap, fp16 outputs, per-tile partials, the finalize order) against the double oracle of plan_fused_reference.h.
// Not emulated: the Mma kernel's smem pipeline (its maps are conv3d_v2_layout.h's, emulated by
// tests/cuda/test_conv3d_v2_layout.cpp); GPU runs: test_plan_fused.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "infer/inference_plan.h"
#include "infer/plan_conv_fused.h"
#include "kernels/cuda/conv3d_v2_layout.h"
#include "layers/conv3d.h"
#include "tests/infer/plan_fused_reference.h"
#include "tests/testing.h"

using namespace dex;
using namespace dex::testing;

TEST(FusedLayout, CentreTapIsTheProjectionsRead) {
  // 3x3x3 pad-1 conv1 and 1x1 pad-0 projection with the same stride: for every output voxel the centre tap reads
  // the input voxel o*s, inside the volume.
  for (Int3 s : {Int3{1, 1, 1}, Int3{2, 2, 2}, Int3{2, 2, 1}}) {
    for (Int3 in : {Int3{5, 6, 7}, Int3{8, 8, 8}, Int3{4, 4, 3}}) {
      const Conv3dParams c = conv_params(2, 8, 16, in, {3, 3, 3}, s, {1, 1, 1});
      const Conv3dParams p = conv_params(2, 8, 16, in, {1, 1, 1}, s, {0, 0, 0});
      std::string why;
      ASSERT_TRUE(fused::projection_rides_on(c, p, &why)) << why;
      const int ct = fused::centre_tap(c.KD, c.KH, c.KW);
      EXPECT_EQ(ct, 13);
      const int kd = ct / 9, kh = (ct / 3) % 3, kw = ct % 3;
      const int64_t S = int64_t(c.OD()) * c.OH() * c.OW();
      for (int64_t v = 0; v < S; ++v) {
        int z, y, x, pz, py, px;
        fused::voxel_origin(v, c.OH(), c.OW(), c.stride, c.pad, &z, &y, &x);
        fused::voxel_origin(v, p.OH(), p.OW(), p.stride, p.pad, &pz, &py, &px);
        ASSERT_EQ(z + kd, pz);
        ASSERT_EQ(y + kh, py);
        ASSERT_EQ(x + kw, px);
        ASSERT_TRUE(pz >= 0 && pz < c.D && py >= 0 && py < c.H && px >= 0 && px < c.W);
      }
    }
  }
  // 5x5x5 pad 2: the centre is tap 62.
  EXPECT_EQ(fused::centre_tap(5, 5, 5), 62);
}

TEST(FusedLayout, ProjectionRidesOnlyOnMatchingShapes) {
  const Conv3dParams c = conv_params(1, 8, 16, {6, 6, 6}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1});
  const Conv3dParams p = conv_params(1, 8, 16, {6, 6, 6}, {1, 1, 1}, {2, 2, 2}, {0, 0, 0});
  EXPECT_TRUE(fused::projection_rides_on(c, p));
  std::string why;
  EXPECT_FALSE(fused::projection_rides_on(c, conv_params(1, 8, 16, {6, 6, 6}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}), &why));
  EXPECT_NE(why.find("stride"), std::string::npos) << why;
  EXPECT_FALSE(fused::projection_rides_on(conv_params(1, 8, 16, {6, 6, 6}, {3, 3, 3}, {2, 2, 2}, {0, 0, 0}), p, &why));
  EXPECT_NE(why.find("padding"), std::string::npos) << why;
  EXPECT_FALSE(fused::projection_rides_on(c, conv_params(1, 8, 8, {6, 6, 6}, {1, 1, 1}, {2, 2, 2}, {0, 0, 0}), &why));
  EXPECT_FALSE(fused::projection_rides_on(conv_params(1, 8, 16, {6, 6, 6}, {2, 2, 2}, {2, 2, 2}, {1, 1, 1}), p, &why));
}

TEST(FusedLayout, TilesCoverEveryRowOnceInsideOneSample) {
  for (int64_t S : {int64_t(1), int64_t(24), int64_t(127), int64_t(128), int64_t(129), int64_t(4101)}) {
    const int N = 3;
    std::vector<int> hits(size_t(N * S), 0);
    const int64_t T = fused::tiles_per_sample(S);
    EXPECT_EQ(T, (S + 127) / 128);
    for (int n = 0; n < N; ++n)
      for (int64_t t = 0; t < T; ++t) {
        const int rows = fused::tile_rows(S, t);
        ASSERT_GE(rows, 1);
        ASSERT_LE(rows, fused::kTileRows);
        for (int r = 0; r < rows; ++r) {
          const int64_t g = fused::tile_global_row(n, S, t, r);
          ASSERT_EQ(g / S, n) << "a tile row left its sample";
          hits[size_t(g)]++;
        }
      }
    for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i], 1) << "S " << S << " row " << i;
  }
}

TEST(FusedLayout, SourceOfSplitsTheConcat) {
  for (auto [Ca, Cb] : {std::pair<int, int>{32, 32}, {64, 64}, {4, 6}, {320, 320}}) {
    std::vector<int> seen_a(Ca, 0), seen_b(Cb, 0);
    for (int c = 0; c < Ca + Cb; ++c) {
      int cs = -1;
      const int src = fused::source_of(c, Ca, &cs);
      ASSERT_TRUE(src == 0 || src == 1);
      (src ? seen_b : seen_a).at(size_t(cs))++;
      EXPECT_EQ(src, c < Ca ? 0 : 1);
    }
    for (int v : seen_a) EXPECT_EQ(v, 1);
    for (int v : seen_b) EXPECT_EQ(v, 1);
    if (Ca % 32 == 0 && Cb % 32 == 0)  // an Mma k-step (32 channels) never straddles the two operands
      for (int c0 = 0; c0 < Ca + Cb; c0 += 32) {
        int a, b;
        EXPECT_EQ(fused::source_of(c0, Ca, &a), fused::source_of(c0 + 31, Ca, &b));
        EXPECT_EQ(b - a, 31);
      }
  }
}

TEST(FusedLayout, NormaliseValueMatchesDouble) {
  // fp32 arithmetic with explicit roundings: (x - mean), * rstd, [* gamma, + beta], [* slope]: each step within one
  // rounding (u32) of its exact result, so |f - exact| <= 4 u32 (|x - mean| rstd (|gamma| + 1) + |beta|).
  const std::vector<float> x = random_vector(4000, 5, -8.f, 8.f), m = random_vector(4000, 6, -3.f, 3.f),
                           r = random_vector(4000, 7, 0.05f, 20.f), g = random_vector(4000, 8, -2.f, 2.f),
                           b = random_vector(4000, 9, -1.f, 1.f);
  const float slope = 0.01f;
  for (size_t i = 0; i < x.size(); ++i)
    for (int mode = 0; mode < 4; ++mode) {
      const bool affine = mode & 1, lrelu = mode & 2;
      double e = (double(x[i]) - m[i]) * r[i];
      if (affine) e = e * g[i] + b[i];
      if (lrelu && e < 0) e *= double(slope);
      const float f = fused::normalise_value(x[i], m[i], r[i], affine, g[i], b[i], lrelu, slope);
      const double bound = 4 * kU32 * (std::abs((double(x[i]) - m[i]) * r[i]) * (std::abs(g[i]) + 1) + std::abs(b[i]));
      ASSERT_LE(std::abs(f - e), bound) << i << " mode " << mode;
      if (lrelu && e > bound) {
        ASSERT_GT(f, 0.f);
      }
    }
  // Padding: 0 normalised is not 0 in general (why the kernels skip out-of-volume elements instead).
  EXPECT_NE(fused::normalise_value(0.f, 0.5f, 2.f, false, 0, 0, true, slope), 0.f);
}

TEST(FusedLayout, RangesPartitionTheTiles) {
  for (int64_t T : {int64_t(1), int64_t(5), int64_t(255), int64_t(256), int64_t(257), int64_t(16384)}) {
    EXPECT_EQ(fused::range_begin(0, T), 0);
    EXPECT_EQ(fused::range_begin(fused::kFinalizeThreads, T), T);
    for (int t = 0; t < fused::kFinalizeThreads; ++t) EXPECT_LE(fused::range_begin(t, T), fused::range_begin(t + 1, T));
  }
}

// Tile partials (fp32, two passes) combined in the finalize order against one double two-pass pass over all values,
// values with |mean| ~ 100 std (where one-pass sums in fp32 would lose everything). Bounds: a tile's fp32 sum of
// <= 128 values errs by <= 128 u32 max|v| (mean); its M2, centred on a mean off by d, gains n d^2 and errs by
// <= 128 u32 M2: rstd relative error <= (128 u32 (1 + 128 u32 (max|v| / std)^2)) / 2 + double rounding; x4 margin.
TEST(FusedLayout, TilePartialsCombineToTheDoubleStatistics) {
  for (int P : {1, 2, 4, fused::kDirectParts})  // threads per tile column: Mma 128 / BN, Direct 16
  for (int64_t S : {int64_t(1), int64_t(100), int64_t(128), int64_t(129), int64_t(32768 + 77), int64_t(300000)}) {
    std::vector<float> v = random_vector(S, uint64_t(S) + 11, -1.f, 1.f);
    for (float& x : v) x = round_f16(100.f + x);
    const int64_t T = fused::tiles_per_sample(S);
    std::vector<float> cnt(static_cast<size_t>(T)), mu(static_cast<size_t>(T)), m2(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      const int rows = fused::tile_rows(S, t);
      const float* tv = v.data() + t * fused::kTileRows;
      fused::tile_moments_split([&](int r) { return tv[r]; }, rows, P, &mu[size_t(t)], &m2[size_t(t)]);
      cnt[size_t(t)] = float(rows);
    }
    double n, mean, q;
    fused::combine_partials(cnt.data(), mu.data(), m2.data(), T, &n, &mean, &q);
    std::vector<double> ref_mean, ref_rstd;
    ref_stats(std::vector<double>(v.begin(), v.end()), 1, 1, 1e-5, &ref_mean, &ref_rstd);
    EXPECT_EQ(n, double(S));
    const double maxv = 101, var = 1.0 / 3;
    EXPECT_NEAR(mean, ref_mean[0], 4 * 128 * kU32 * maxv) << "S " << S << " P " << P;
    const float rstd = fused::rstd_of(n, q, 1e-5f);
    const double rb = 4 * (128 * kU32 * (1 + 128 * kU32 * maxv * maxv / var) / 2 + kU32);
    EXPECT_LE(std::abs(rstd / ref_rstd[0] - 1), rb) << "S " << S << " P " << P << ": rstd " << rstd << " vs "
                                                    << ref_rstd[0];
  }
}

// ---- the fused conv, emulated tile by tile from the header's functions ------------------------------------------
namespace {

struct EmuResult {
  std::vector<float> y, py;            // fp16-rounded outputs
  std::vector<float> mean, rstd, pmean, prstd;
};

// The Direct kernel's loops: tile t of sample n, row r; taps in order, then the concatenated channels; fp32 fma;
// tile statistics with its 16 threads per column.
EmuResult emulate_fused(const Conv3dParams& p, const RefOperand* ops, int num_in, const std::vector<float>& w,
                        const std::vector<float>* pw, float slope, float eps) {
  const int K = p.K, taps = int(p.taps());
  const int64_t S = p.out_voxels() / p.N, T = fused::tiles_per_sample(S);
  EmuResult e;
  e.y.assign(size_t(p.out_elems()), std::nanf(""));
  if (pw) e.py.assign(size_t(p.out_elems()), std::nanf(""));
  std::vector<float> part(size_t(3 * p.N * K * T)), ppart(part.size());
  const int centre = fused::centre_tap(p.KD, p.KH, p.KW);
  EXPECT_EQ(ops[0].C + (num_in == 2 ? ops[1].C : 0), p.C);
  for (int n = 0; n < p.N; ++n)
    for (int64_t t = 0; t < T; ++t) {
      const int rows = fused::tile_rows(S, t);
      std::vector<float> tile(size_t(rows) * K), ptile(size_t(rows) * K);
      for (int r = 0; r < rows; ++r) {
        int z0, y0, x0;
        fused::voxel_origin(t * fused::kTileRows + r, p.OH(), p.OW(), p.stride, p.pad, &z0, &y0, &x0);
        std::vector<float> acc(size_t(K), 0.f), pacc(size_t(K), 0.f);
        for (int kd = 0; kd < p.KD; ++kd)
          for (int kh = 0; kh < p.KH; ++kh)
            for (int kw = 0; kw < p.KW; ++kw) {
              const int iz = z0 + kd * p.dil[0], iy = y0 + kh * p.dil[1], ix = x0 + kw * p.dil[2];
              if (iz < 0 || iz >= p.D || iy < 0 || iy >= p.H || ix < 0 || ix >= p.W) continue;
              const int tap = (kd * p.KH + kh) * p.KW + kw;
              const int64_t v = ((int64_t(n) * p.D + iz) * p.H + iy) * p.W + ix;
              for (int c = 0; c < p.C; ++c) {
                int cs;
                const RefOperand& o = ops[fused::source_of(c, ops[0].C, &cs)];
                float xv = o.x[size_t(v * o.C + cs)];
                if (!o.mean.empty()) {
                  const bool affine = !o.gamma.empty();
                  xv = round_f16(fused::normalise_value(xv, o.mean[n * o.C + cs], o.rstd[n * o.C + cs], affine,
                                                        affine ? o.gamma[cs] : 0.f, affine ? o.beta[cs] : 0.f, o.lrelu,
                                                        slope));
                }
                for (int k = 0; k < K; ++k) {
                  acc[k] = std::fma(xv, w[(size_t(k) * taps + tap) * p.C + c], acc[k]);
                  if (pw && tap == centre) pacc[k] = std::fma(xv, (*pw)[size_t(k) * p.C + c], pacc[k]);
                }
              }
            }
        const int64_t g = fused::tile_global_row(n, S, t, r);
        for (int k = 0; k < K; ++k) {
          EXPECT_TRUE(std::isnan(e.y[size_t(g * K + k)])) << "output written twice";
          e.y[size_t(g * K + k)] = tile[size_t(r) * K + k] = round_f16(acc[k]);
          if (pw) e.py[size_t(g * K + k)] = ptile[size_t(r) * K + k] = round_f16(pacc[k]);
        }
      }
      for (int k = 0; k < K; ++k)
        for (int out = 0; out < (pw ? 2 : 1); ++out) {
          const std::vector<float>& tl = out ? ptile : tile;
          std::vector<float>& pp = out ? ppart : part;
          float mu, m2;
          fused::tile_moments_split([&](int r) { return tl[size_t(r) * K + k]; }, rows, fused::kDirectParts, &mu, &m2);
          pp[size_t(fused::partial_index(0, n, k, t, p.N, K, T))] = float(rows);
          pp[size_t(fused::partial_index(1, n, k, t, p.N, K, T))] = mu;
          pp[size_t(fused::partial_index(2, n, k, t, p.N, K, T))] = m2;
        }
    }
  for (int out = 0; out < (pw ? 2 : 1); ++out) {
    const std::vector<float>& pp = out ? ppart : part;
    std::vector<float>& mean = out ? e.pmean : e.mean;
    std::vector<float>& rstd = out ? e.prstd : e.rstd;
    mean.resize(size_t(p.N) * K);
    rstd.resize(size_t(p.N) * K);
    for (int n = 0; n < p.N; ++n)
      for (int k = 0; k < K; ++k) {
        double cn, cm, cq;
        fused::combine_partials(&pp[size_t(fused::partial_index(0, n, k, 0, p.N, K, T))],
                                &pp[size_t(fused::partial_index(1, n, k, 0, p.N, K, T))],
                                &pp[size_t(fused::partial_index(2, n, k, 0, p.N, K, T))], T, &cn, &cm, &cq);
        EXPECT_EQ(cn, double(S));
        mean[size_t(n) * K + k] = float(cm);
        rstd[size_t(n) * K + k] = fused::rstd_of(cn, cq, eps);
      }
  }
  return e;
}


struct FusedCase {
  const char* name;
  Conv3dParams conv;
  RefOperand in[2];
  int num_in = 1;
  bool proj = false;
};

RefOperand operand(int N, int C, Int3 sp, uint64_t seed, bool norm, bool affine, bool lrelu) {
  RefOperand o;
  o.C = C;
  o.x = f16_vector(int64_t(N) * sp[0] * sp[1] * sp[2] * C, seed, -2.f, 3.f);
  if (norm) {  // raw conv outputs with their (given) statistics; mean far from 0 so padding would show
    o.mean = random_vector(int64_t(N) * C, seed + 1, 0.5f, 1.5f);
    o.rstd = random_vector(int64_t(N) * C, seed + 2, 0.5f, 2.f);
    o.lrelu = lrelu;
    if (affine) {
      o.gamma = random_vector(C, seed + 3, 0.5f, 1.5f);
      o.beta = random_vector(C, seed + 4, -0.5f, 0.5f);
    }
  }
  return o;
}

std::vector<FusedCase> emulation_cases() {
  std::vector<FusedCase> cs;
  {
    FusedCase c;
    c.name = "norm+lrelu s1 5x6x7";
    c.conv = conv_params(2, 8, 8, {5, 6, 7}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
    c.in[0] = operand(2, 8, {5, 6, 7}, 100, true, false, true);
    cs.push_back(c);
  }
  {
    FusedCase c;
    c.name = "two operands, affine";
    c.conv = conv_params(1, 10, 6, {4, 5, 3}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
    c.in[0] = operand(1, 4, {4, 5, 3}, 200, false, false, false);
    c.in[1] = operand(1, 6, {4, 5, 3}, 300, true, true, true);
    c.num_in = 2;
    cs.push_back(c);
  }
  {
    FusedCase c;
    c.name = "s2 + projection, C3";
    c.conv = conv_params(2, 3, 8, {7, 6, 5}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1});
    c.in[0] = operand(2, 3, {7, 6, 5}, 400, false, false, false);
    c.proj = true;
    cs.push_back(c);
  }
  {
    FusedCase c;
    c.name = "s221 + projection, norm";
    c.conv = conv_params(1, 8, 16, {12, 10, 9}, {3, 3, 3}, {2, 2, 1}, {1, 1, 1});  // 6x5x9 = 270 rows: 3 tiles
    c.in[0] = operand(1, 8, {12, 10, 9}, 500, true, false, true);
    c.proj = true;
    cs.push_back(c);
  }
  return cs;
}

}  // namespace

TEST(FusedLayout, FusedConvEmulationMatchesTheDoubleOracle) {
  const float slope = 0.01f, eps = 1e-5f;
  for (const FusedCase& c : emulation_cases()) {
    const Conv3dParams& p = c.conv;
    const std::vector<float> w = f16_vector(p.weight_elems(), 77, -0.3f, 0.3f);
    Conv3dParams pp = p;
    pp.KD = pp.KH = pp.KW = 1;
    pp.pad[0] = pp.pad[1] = pp.pad[2] = 0;
    const std::vector<float> pw = f16_vector(pp.weight_elems(), 78, -0.5f, 0.5f);
    const EmuResult e = emulate_fused(p, c.in, c.num_in, w, c.proj ? &pw : nullptr, slope, eps);
    // Oracle: materialised operands, zero-padded conv in double, fp16 outputs.
    const std::vector<double> a = ref_materialise(c.in[0], p.N, slope);
    std::vector<double> b;
    if (c.num_in == 2) b = ref_materialise(c.in[1], p.N, slope);
    const std::vector<double> y = ref_conv(p, a, c.in[0].C, c.num_in == 2 ? &b : nullptr, c.num_in == 2 ? c.in[1].C : 0, w);
    expect_outputs_close(round_all_f16(y), e.y, p.taps() * p.C, c.name);
    expect_stats_of(e.y, p.N, p.K, eps, e.mean, e.rstd, c.name);
    if (c.proj) {
      ASSERT_TRUE(fused::projection_rides_on(p, pp));
      const std::vector<double> py = ref_conv(pp, a, c.in[0].C, nullptr, 0, pw);
      expect_outputs_close(round_all_f16(py), e.py, p.C, (std::string(c.name) + " proj").c_str());
      expect_stats_of(e.py, p.N, p.K, eps, e.pmean, e.prstd, "projection");
    }
  }
}

// The f16 plan's workspace holds the f32 input staging and, after it, every conv step's tile partials (its output's
// and its projection's, each 3 x N x K x ceil(S / 128) floats), counted here independently of the builder.
TEST(FusedLayout, F16WorkspaceHoldsTheTilePartials) {
  struct Case {
    DynUNetConfig cfg;
    Int3 sp;
    int batch;
  };
  DynUNetConfig tiny;
  tiny.kernel_sizes = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  tiny.strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}, {2, 2, 1}};
  tiny.upsample_kernel_sizes = {{2, 2, 2}, {2, 2, 2}, {2, 2, 1}};
  tiny.filters = {32, 32, 64, 64};
  for (const Case& c : {Case{DynUNetConfig(), {128, 128, 128}, 1}, Case{tiny, {16, 16, 8}, 2}}) {
    PlanOptions o;
    o.device = Device::CUDA;
    o.precision = DType::F16;
    o.batch = c.batch;
    const PlanSchedule s = build_plan_schedule(c.cfg, c.sp, o);
    const size_t staging = size_t(s.buffers[s.input].voxels) * s.config.in_channels * sizeof(float);
    size_t need = 0;
    int convs = 0;
    for (const PlanStep& st : s.steps) {
      if (st.kind != PlanStepKind::Conv) continue;
      ++convs;
      EXPECT_GE(st.out_stats, 0) << st.name << ": every conv output is normalised by its consumer";
      const int64_t S = st.conv.OD() * int64_t(st.conv.OH()) * st.conv.OW();
      const size_t one = 3 * size_t(c.batch) * st.conv.K * size_t((S + 127) / 128) * sizeof(float);
      need = std::max(need, ((staging + 255) / 256 * 256) + (one + 255) / 256 * 256 + (st.proj_out >= 0 ? one : 0));
    }
    EXPECT_GT(convs, 0);
    EXPECT_GE(s.memory.workspace, need);
    std::printf("[ f16 workspace ] %zu bytes, the fused partials need %zu\n", s.memory.workspace, need);
  }
}

// The Mma kernel's A path, one CTA and k-step at a time, from the maps it uses (conv3d_v2_layout.h: a_row, a_chunk,
// kstep, swz; fused::voxel_origin, tap_voxel, source_of, tile_rows): each thread's four 16-byte chunks land
// (zero-filled outside the volume or past the tile's rows), then the thread normalises its own in-volume chunks.
// The logical tile read back through the swizzle must equal the materialised operands' im2col rows exactly (padding
// and missing rows 0), and every (row, chunk) slot must be written by exactly one thread.
TEST(FusedLayout, MmaTileFillWithPrologueEqualsTheNormalisedIm2col) {
  const float slope = 0.01f;
  struct Case {
    Conv3dParams p;
    RefOperand in[2];
    int num_in;
  };
  std::vector<Case> cases;
  {
    Case c;
    c.p = conv_params(2, 64, 32, {7, 6, 5}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1});  // 4x3x3 = 36 rows: a partial tile
    c.in[0] = operand(2, 32, {7, 6, 5}, 600, true, false, true);
    c.in[1] = operand(2, 32, {7, 6, 5}, 610, false, false, false);
    c.num_in = 2;
    cases.push_back(c);
  }
  {
    Case c;
    c.p = conv_params(1, 32, 32, {9, 8, 4}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});  // 288 rows: 3 tiles
    c.in[0] = operand(1, 32, {9, 8, 4}, 620, true, true, true);
    c.num_in = 1;
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    const Conv3dParams& p = c.p;
    std::vector<double> mat[2];
    for (int i = 0; i < c.num_in; ++i) mat[i] = ref_materialise(c.in[i], p.N, slope);
    const int64_t S = p.out_voxels() / p.N, T = fused::tiles_per_sample(S);
    const int KT = int(p.taps()) * (p.C / v2::kBK);
    for (int n = 0; n < p.N; ++n)
      for (int64_t t = 0; t < T; ++t) {
        const int count = fused::tile_rows(S, t);
        for (int kt = 0; kt < KT; ++kt) {
          std::vector<float> smem(v2::kBM * v2::kBK, std::nanf(""));
          std::vector<int> writes(smem.size() / 8, 0);
          int tap, c0, cs;
          v2::kstep(kt, p.C, &tap, &c0);
          const int src = fused::source_of(c0, c.in[0].C, &cs);
          const RefOperand& o = c.in[src];
          for (int tid = 0; tid < v2::kThreads; ++tid)
            for (int i = 0; i < 4; ++i) {
              const int row = v2::a_row(tid, i), chunk = v2::a_chunk(tid);
              const bool rv = row < count;
              int z0 = 0, y0 = 0, x0 = 0;
              fused::voxel_origin(rv ? t * v2::kBM + row : 0, p.OH(), p.OW(), p.stride, p.pad, &z0, &y0, &x0);
              const int64_t v = fused::tap_voxel(n, z0, y0, x0, tap, p.KH, p.KW, p.dil, p.D, p.H, p.W);
              const bool ok = rv && v >= 0;
              const int slot = v2::swz(row, chunk);
              writes[size_t(slot / 8)]++;
              for (int e = 0; e < 8; ++e) {  // cp.async (zero fill), then the thread's own prologue
                float x = ok ? o.x[size_t(v * o.C + cs + chunk * 8 + e)] : 0.f;
                if (ok && !o.mean.empty()) {
                  const int ch = cs + chunk * 8 + e;
                  const bool affine = !o.gamma.empty();
                  x = round_f16(fused::normalise_value(x, o.mean[size_t(n * o.C + ch)], o.rstd[size_t(n * o.C + ch)],
                                                       affine, affine ? o.gamma[size_t(ch)] : 0.f,
                                                       affine ? o.beta[size_t(ch)] : 0.f, o.lrelu, slope));
                }
                smem[size_t(slot + e)] = x;
              }
            }
          for (int w : writes) ASSERT_EQ(w, 1) << "a swizzled 16-byte slot written " << w << " times";
          // Expected: row r's im2col entries for (tap, channels c0..c0+31) of the concatenated materialised operands.
          const int kd = tap / (p.KH * p.KW), kh = (tap / p.KW) % p.KH, kw = tap % p.KW;
          for (int r = 0; r < v2::kBM; ++r)
            for (int j = 0; j < v2::kBK; ++j) {
              double want = 0;
              if (r < count) {
                int64_t s = t * v2::kBM + r;
                const int ow = int(s % p.OW());
                s /= p.OW();
                const int oh = int(s % p.OH()), od = int(s / p.OH());
                const int iz = od * p.stride[0] - p.pad[0] + kd, iy = oh * p.stride[1] - p.pad[1] + kh,
                          ix = ow * p.stride[2] - p.pad[2] + kw;
                if (iz >= 0 && iz < p.D && iy >= 0 && iy < p.H && ix >= 0 && ix < p.W) {
                  const int cc = c0 + j;
                  const int which = cc < c.in[0].C ? 0 : 1, ch = which ? cc - c.in[0].C : cc;
                  want = mat[which][((((size_t(n) * p.D + iz) * p.H + iy) * p.W) + ix) * c.in[which].C + ch];
                }
              }
              const float got = smem[size_t(v2::swz(r, j / 8) + j % 8)];
              ASSERT_EQ(double(got), want) << "n " << n << " tile " << t << " k-step " << kt << " row " << r
                                           << " channel " << c0 + j;
            }
        }
      }
  }
}
