// Instance norm (spec §2.1): PyTorch parity (float64 torch on the same fp32 inputs), analytic sanity,
// finite-difference gradients, GradMode, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/elementwise.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

using testing::FixtureTensor;
using testing::kUnitF32;

struct InCase {
  InstanceNormParams p;
  std::map<std::string, FixtureTensor> fx;
  std::string name;
  const FixtureTensor& t(const std::string& k) const { return fx.at(name + "." + k); }
};

InCase load_case(const std::string& name) {
  InCase c;
  c.name = name;
  c.fx = testing::load_fixture(testing::test_data("ops/instance_norm.bin"));
  const auto& x = c.fx.at(name + ".x");  // [N, D, H, W, C]
  c.p.N = static_cast<int>(x.shape[0]);
  c.p.C = static_cast<int>(x.shape[4]);
  c.p.S = x.shape[1] * x.shape[2] * x.shape[3];
  c.p.affine = c.fx.count(name + ".gamma") > 0;
  return c;
}

class InstanceNormParity : public ::testing::TestWithParam<const char*> {};

// Forward: the kernel computes in double and rounds once, so rtol = 2u (+ sqrt(S) * 2^-53 accumulation);
// atol = rtol * rms(ref) for near-zero outputs.
TEST_P(InstanceNormParity, instance_norm_fwd_and_bwd_match_pytorch) {
  InCase c = load_case(GetParam());
  const auto& p = c.p;
  const int64_t n = p.N * p.S * p.C;
  std::vector<float> x = c.t("x").f32(), y(n), mean(p.N * p.C), rstd(p.N * p.C), gamma, beta;
  if (p.affine) gamma = c.t("gamma").f32(), beta = c.t("beta").f32();
  instance_norm_fwd_cpu(p, x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data());

  const double rtol = 2 * kUnitF32 + std::sqrt(static_cast<double>(p.S)) * std::ldexp(1.0, -53);
  testing::check_close("instance_norm " + c.name + " y", y.data(), c.t("y").data.data(), n, rtol, rtol * testing::rms(c.t("y").data),
                       4 * rtol * rtol);
  testing::check_close("instance_norm " + c.name + " mean", mean.data(), c.t("mean").data.data(), p.N * p.C, rtol,
                       rtol * testing::rms(c.t("x").data), 4 * rtol * rtol);
  testing::check_close("instance_norm " + c.name + " rstd", rstd.data(), c.t("rstd").data.data(), p.N * p.C, rtol, 0, 4 * rtol * rtol);

  // Backward with the saved fp32 mean/rstd: xhat carries an absolute error u*|mean|*rstd from the rounded mean, on
  // top of the rounding of rstd and of dx itself, so rtol = u * (4 + max |mean|*rstd).
  double mr = 0;
  for (int k = 0; k < p.N * p.C; ++k) mr = std::max(mr, std::fabs(mean[k]) * static_cast<double>(rstd[k]));
  const double brtol = kUnitF32 * (4 + mr);
  std::vector<float> dy = c.t("dy").f32(), dx(n), dgamma(p.C, 0.f), dbeta(p.C, 0.f);
  instance_norm_bwd_cpu(p, x.data(), dy.data(), mean.data(), rstd.data(), gamma.data(), dx.data(), dgamma.data(),
                        dbeta.data());
  testing::check_close("instance_norm " + c.name + " dx", dx.data(), c.t("dx").data.data(), n, brtol,
                       brtol * testing::rms(c.t("dx").data), 4 * brtol * brtol);
  if (p.affine) {
    // dgamma = sum dy*xhat: the cancellation bound is brtol * sum |dy*xhat| (computed here from the reference stats).
    std::vector<double> abs_dyx(p.C, 0.0), abs_dy(p.C, 0.0);
    for (int nn = 0; nn < p.N; ++nn)
      for (int64_t s = 0; s < p.S; ++s)
        for (int ch = 0; ch < p.C; ++ch) {
          const int64_t i = (nn * p.S + s) * p.C + ch;
          double xhat = (x[i] - c.t("mean").data[nn * p.C + ch]) * c.t("rstd").data[nn * p.C + ch];
          abs_dyx[ch] += std::fabs(dy[i] * xhat);
          abs_dy[ch] += std::fabs(dy[i]);
        }
    for (int ch = 0; ch < p.C; ++ch) {
      EXPECT_NEAR(dgamma[ch], c.t("dgamma").data[ch], brtol * abs_dyx[ch] + 2 * kUnitF32 * std::fabs(dgamma[ch]))
          << "channel " << ch;
      EXPECT_NEAR(dbeta[ch], c.t("dbeta").data[ch], 2 * kUnitF32 * abs_dy[ch]) << "channel " << ch;
    }
    double worst = 0;
    for (int ch = 0; ch < p.C; ++ch)
      worst = std::max({worst, std::fabs(dgamma[ch] / c.t("dgamma").data[ch] - 1), std::fabs(dbeta[ch] / c.t("dbeta").data[ch] - 1)});
    std::cout << "[ parity   ] instance_norm " << c.name << " dgamma/dbeta: max rel err " << worst << "\n";
  }
}
INSTANTIATE_TEST_SUITE_P(ops, InstanceNormParity, ::testing::Values("plain", "affine", "offset"));

// Analytic: every (n, c) of the output has mean 0 and biased variance var/(var + eps); a constant channel
// (var = 0) gives exactly 0, not NaN. y may alias x.
TEST(instance_norm, output_has_zero_mean_and_unit_variance_in_place) {
  InstanceNormParams p;
  p.N = 2, p.C = 3, p.S = 4 * 5 * 3;
  const int64_t n = p.N * p.S * p.C;
  std::vector<float> x = testing::random_vector(n, 11, -2.f, 5.f);
  for (int64_t s = 0; s < p.S; ++s) x[(1 * p.S + s) * p.C + 2] = 3.25f;  // sample 1, channel 2: constant
  std::vector<double> var(p.N * p.C, 0.0), mu(p.N * p.C, 0.0);
  for (int nn = 0; nn < p.N; ++nn)
    for (int ch = 0; ch < p.C; ++ch) {
      for (int64_t s = 0; s < p.S; ++s) mu[nn * p.C + ch] += x[(nn * p.S + s) * p.C + ch] / double(p.S);
      for (int64_t s = 0; s < p.S; ++s) {
        double d = x[(nn * p.S + s) * p.C + ch] - mu[nn * p.C + ch];
        var[nn * p.C + ch] += d * d / double(p.S);
      }
    }
  std::vector<float> mean(p.N * p.C), rstd(p.N * p.C);
  instance_norm_fwd_cpu(p, x.data(), nullptr, nullptr, x.data(), mean.data(), rstd.data());  // in place
  for (int nn = 0; nn < p.N; ++nn)
    for (int ch = 0; ch < p.C; ++ch) {
      double m = 0, v = 0;
      for (int64_t s = 0; s < p.S; ++s) m += x[(nn * p.S + s) * p.C + ch] / double(p.S);
      for (int64_t s = 0; s < p.S; ++s) v += std::pow(x[(nn * p.S + s) * p.C + ch] - m, 2) / double(p.S);
      const double vk = var[nn * p.C + ch];
      EXPECT_NEAR(m, 0.0, 8 * kUnitF32) << "n " << nn << " c " << ch;
      EXPECT_NEAR(v, vk / (vk + 1e-5), 8 * kUnitF32) << "n " << nn << " c " << ch;
    }
  for (int64_t s = 0; s < p.S; ++s) EXPECT_EQ(x[(1 * p.S + s) * p.C + 2], 0.0f);
}

// Backward against central finite differences, for x, gamma and beta, affine and not.
TEST(instance_norm, backward_matches_finite_differences) {
  for (bool affine : {false, true}) {
    InstanceNormParams p;
    p.N = 2, p.C = 3, p.S = 2 * 3 * 2, p.affine = affine;
    const int64_t n = p.N * p.S * p.C;
    std::vector<float> x = testing::random_vector(n, 21, -1.f, 1.f), g = testing::random_vector(p.C, 22, 0.5f, 1.5f),
                       b = testing::random_vector(p.C, 23, -0.5f, 0.5f), w = testing::random_vector(n, 24);
    testing::grid_inputs(x), testing::grid_inputs(g), testing::grid_inputs(b);
    auto run = [&](const std::vector<float>& xx, const std::vector<float>& gg, const std::vector<float>& bb) {
      std::vector<float> y(n), m(p.N * p.C), r(p.N * p.C);
      instance_norm_fwd_cpu(p, xx.data(), gg.data(), bb.data(), y.data(), m.data(), r.data());
      return std::vector<double>(y.begin(), y.end());
    };
    std::vector<float> y(n), m(p.N * p.C), r(p.N * p.C), dx(n), dg(p.C, 0.f), db(p.C, 0.f);
    instance_norm_fwd_cpu(p, x.data(), g.data(), b.data(), y.data(), m.data(), r.data());
    instance_norm_bwd_cpu(p, x.data(), w.data(), m.data(), r.data(), g.data(), dx.data(), dg.data(), db.data());
    const double h = std::ldexp(1.0, -6), rtol = 1e-5;
    SCOPED_TRACE(affine ? "affine" : "plain");
    EXPECT_GRADCHECK_NAMED(dex::str("instance_norm d", "x", affine ? " (affine)" : ""), testing::gradcheck(x, [&](const std::vector<float>& v) { return run(v, g, b); }, w, dx, h, rtol));
    if (affine) {
      EXPECT_GRADCHECK_NAMED(dex::str("instance_norm d", "g", affine ? " (affine)" : ""), testing::gradcheck(g, [&](const std::vector<float>& v) { return run(x, v, b); }, w, dg, h, rtol));
      EXPECT_GRADCHECK_NAMED(dex::str("instance_norm d", "b", affine ? " (affine)" : ""), testing::gradcheck(b, [&](const std::vector<float>& v) { return run(x, g, v); }, w, db, h, rtol));
    }
  }
}

// Overwrite writes dx; Accumulate adds to it; dgamma/dbeta always accumulate.
TEST(instance_norm, grad_modes_overwrite_and_accumulate) {
  InstanceNormParams p;
  p.N = 1, p.C = 2, p.S = 7, p.affine = true;
  const int64_t n = p.S * p.C;
  std::vector<float> x = testing::random_vector(n, 31), dy = testing::random_vector(n, 32), g = {0.5f, 2.f},
                     b = {0.f, 1.f}, y(n), m(2), r(2);
  instance_norm_fwd_cpu(p, x.data(), g.data(), b.data(), y.data(), m.data(), r.data());
  std::vector<float> dx1(n, 123.f), dg1(2, 0.f), db1(2, 0.f);
  instance_norm_bwd_cpu(p, x.data(), dy.data(), m.data(), r.data(), g.data(), dx1.data(), dg1.data(), db1.data());
  std::vector<float> dx2(n, 1.f), dg2(2, 1.f), db2(2, 1.f);
  instance_norm_bwd_cpu(p, x.data(), dy.data(), m.data(), r.data(), g.data(), dx2.data(), dg2.data(), db2.data(),
                        GradMode::Accumulate);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(dx2[i], 1.0 + dx1[i], 2 * kUnitF32 * (1.0 + std::fabs(dx1[i])));
  for (int c = 0; c < 2; ++c) {
    EXPECT_NEAR(dg2[c], 1.0 + dg1[c], 2 * kUnitF32 * (1.0 + std::fabs(dg1[c])));
    EXPECT_NEAR(db2[c], 1.0 + db1[c], 2 * kUnitF32 * (1.0 + std::fabs(db1[c])));
  }
}

TEST(instance_norm, bad_input_throws) {
  std::vector<float> x(12), y(12), m(4), r(4);
  InstanceNormParams p;
  p.N = 1, p.C = 2, p.S = 6;
  InstanceNormParams bad = p;
  bad.S = 0;
  EXPECT_THROW(instance_norm_fwd_cpu(bad, x.data(), nullptr, nullptr, y.data(), m.data(), r.data()), Error);
  bad = p, bad.C = -1;
  EXPECT_THROW(instance_norm_fwd_cpu(bad, x.data(), nullptr, nullptr, y.data(), m.data(), r.data()), Error);
  EXPECT_THROW(instance_norm_fwd_cpu(p, nullptr, nullptr, nullptr, y.data(), m.data(), r.data()), Error);
  bad = p, bad.affine = true;  // affine without gamma/beta
  EXPECT_THROW(instance_norm_fwd_cpu(bad, x.data(), nullptr, nullptr, y.data(), m.data(), r.data()), Error);
  EXPECT_THROW(instance_norm_bwd_cpu(p, x.data(), nullptr, m.data(), r.data(), nullptr, y.data(), nullptr, nullptr),
               Error);
}

}  // namespace
}  // namespace dex
