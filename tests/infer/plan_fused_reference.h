// The straightforward double-precision oracle of the fused conv (infer/plan_conv_fused.h), shared by the CPU test of
// the fused index math (test_plan_fused_layout.cpp) and the GPU test (test_plan_fused.cpp): materialise each operand
// as the unfused path stores it (normalised + LeakyReLU, rounded to fp16), concatenate, pad with zeros, convolve in
// double, round the outputs to fp16, and take their instance-norm statistics in double.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "infer/plan_conv_fused.h"
#include "kernels/conv3d.h"
#include "kernels/half.h"
#include "tests/testing.h"

namespace dex::testing {

// A validated conv problem of the tests' shapes.
inline Conv3dParams conv_params(int N, int C, int K, Int3 in, Int3 k, Int3 s, Int3 pad) {
  Conv3dParams p;
  p.N = N;
  p.C = C;
  p.K = K;
  p.D = in[0];
  p.H = in[1];
  p.W = in[2];
  p.KD = k[0];
  p.KH = k[1];
  p.KW = k[2];
  for (int a = 0; a < 3; ++a) {
    p.stride[a] = s[a];
    p.pad[a] = pad[a];
  }
  p.validate();
  return p;
}

// Seeded uniform values in [lo, hi), rounded to fp16.
inline std::vector<float> f16_vector(int64_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v = random_vector(n, seed, lo, hi);
  for (float& x : v) x = round_f16(x);
  return v;
}

struct RefOperand {
  std::vector<float> x;        // fp16-representable values, NDHWC [N][D][H][W][C]
  int C = 0;
  std::vector<float> mean, rstd;  // [N][C]; empty: read as stored
  std::vector<float> gamma, beta; // [C]; empty: no affine
  bool lrelu = false;
};

// The operand as the conv sees it: the prologue's fp32 arithmetic (fused::normalise_value, itself checked against
// double by FusedLayout.NormaliseValueMatchesDouble), rounded to fp16: the very values the unfused path stores, so
// oracle and kernels differ only in summation order.
inline std::vector<double> ref_materialise(const RefOperand& o, int N, float slope) {
  std::vector<double> v(o.x.size());
  const int64_t S = int64_t(o.x.size()) / (int64_t(N) * o.C);
  for (size_t i = 0; i < o.x.size(); ++i) {
    if (o.mean.empty()) {
      v[i] = o.x[i];
      continue;
    }
    const int c = int(i % o.C);
    const int n = int(int64_t(i) / (S * o.C));
    const bool affine = !o.gamma.empty();
    v[i] = round_f16(fused::normalise_value(o.x[i], o.mean[n * o.C + c], o.rstd[n * o.C + c], affine,
                                            affine ? o.gamma[c] : 0.f, affine ? o.beta[c] : 0.f, o.lrelu, slope));
  }
  return v;
}

// y[m][k] = sum over taps and channels of the concatenated, zero-padded operands times w[k][tap][c], in double.
inline std::vector<double> ref_conv(const Conv3dParams& p, const std::vector<double>& a, int Ca,
                                    const std::vector<double>* b, int Cb, const std::vector<float>& w) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW(), C = Ca + Cb;
  std::vector<double> y(size_t(p.out_voxels()) * p.K, 0.0);
  for (int n = 0; n < p.N; ++n)
    for (int od = 0; od < OD; ++od)
      for (int oh = 0; oh < OH; ++oh)
        for (int ow = 0; ow < OW; ++ow) {
          double* yo = &y[((((size_t(n) * OD + od) * OH + oh) * OW) + ow) * p.K];
          for (int kd = 0; kd < p.KD; ++kd)
            for (int kh = 0; kh < p.KH; ++kh)
              for (int kw = 0; kw < p.KW; ++kw) {
                const int iz = od * p.stride[0] - p.pad[0] + kd * p.dil[0];
                const int iy = oh * p.stride[1] - p.pad[1] + kh * p.dil[1];
                const int ix = ow * p.stride[2] - p.pad[2] + kw * p.dil[2];
                if (iz < 0 || iz >= p.D || iy < 0 || iy >= p.H || ix < 0 || ix >= p.W) continue;  // zero padding
                const size_t v = ((size_t(n) * p.D + iz) * p.H + iy) * p.W + ix;
                const int tap = (kd * p.KH + kh) * p.KW + kw;
                for (int k = 0; k < p.K; ++k) {
                  const float* wk = &w[(size_t(k) * p.taps() + tap) * C];
                  double s = 0;
                  for (int c = 0; c < Ca; ++c) s += a[v * Ca + c] * wk[c];
                  for (int c = 0; c < Cb; ++c) s += (*b)[v * Cb + c] * wk[Ca + c];
                  yo[k] += s;
                }
              }
        }
  return y;
}

// Per (sample, channel) mean and rstd of values x [N][S][C] in double (two passes, biased variance).
inline void ref_stats(const std::vector<double>& x, int N, int C, double eps, std::vector<double>* mean,
                      std::vector<double>* rstd) {
  const int64_t S = int64_t(x.size()) / (int64_t(N) * C);
  mean->assign(size_t(N) * C, 0.0);
  rstd->assign(size_t(N) * C, 0.0);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      double s = 0;
      for (int64_t v = 0; v < S; ++v) s += x[(size_t(n) * S + v) * C + c];
      const double mu = s / double(S);
      double q = 0;
      for (int64_t v = 0; v < S; ++v) {
        const double d = x[(size_t(n) * S + v) * C + c] - mu;
        q += d * d;
      }
      (*mean)[n * C + c] = mu;
      (*rstd)[n * C + c] = 1.0 / std::sqrt(q / double(S) + eps);
    }
}

inline std::vector<double> round_all_f16(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = round_f16(float(v[i]));
  return r;
}

// Unit roundoffs of the tolerances (STYLE.md §2).
constexpr double kU32 = 5.96e-8, kU16 = 4.88e-4;

// Outputs: fp16 rounding of sums that differ only in order (fp32 fma vs double): rtol = 2 u16 + sqrt(K) u32,
// atol = rtol rms(ref). Prints the worst element's share of the tolerance.
inline void expect_outputs_close(const std::vector<double>& ref, const std::vector<float>& got, int64_t K_red,
                                 const std::string& what) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  double rms = 0;
  for (double r : ref) rms += r * r;
  rms = std::sqrt(rms / double(ref.size()));
  const double rtol = 2 * kU16 + std::sqrt(double(K_red)) * kU32;
  double worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double ratio = std::abs(got[i] - ref[i]) / (rtol * rms + rtol * std::abs(ref[i]));
    if (!(ratio <= worst)) {
      worst = ratio;
      wi = i;
    }
  }
  std::printf("[ %-34s] worst output at %.0f%% of the tolerance\n", what.c_str(), 100 * worst);
  EXPECT_LE(worst, 1.0) << what << " element " << wi << ": ref " << ref[wi] << " got " << got[wi];
}

// Statistics against double statistics of the kernel's own stored output: fp32 tile sums of <= 128 values, mean
// within 4 x 128 u32 max|y|, rstd within 4 x 128 u32 (values O(1), the tiles' mean offsets negligible).
inline void expect_stats_of(const std::vector<float>& y, int N, int K, float eps, const std::vector<float>& mean,
                            const std::vector<float>& rstd, const std::string& what) {
  std::vector<double> m, r;
  ref_stats(std::vector<double>(y.begin(), y.end()), N, K, eps, &m, &r);
  double maxy = 0;
  for (float v : y) maxy = std::max(maxy, double(std::abs(v)));
  for (size_t i = 0; i < m.size(); ++i) {
    EXPECT_NEAR(mean[i], m[i], 4 * 128 * kU32 * maxy + 1e-30) << what << " mean " << i;
    EXPECT_NEAR(rstd[i] / r[i], 1.0, 4 * 128 * kU32) << what << " rstd " << i;
  }
}

}  // namespace dex::testing
