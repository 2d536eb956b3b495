// DiceCE loss (MONAI DiceCELoss(to_onehot_y=True, softmax=True), spec §9): parity with the MONAI formula in
// float64 torch (loss, dice, ce, d loss/d logits by autograd), including an empty foreground and non-default
// lambdas; analytic cases (perfect prediction, uniform prediction of an empty foreground); grad_scale;
// finite differences; invalid targets throw.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/dice_ce.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

using testing::kUnitF32;

class DiceCEParity : public ::testing::TestWithParam<const char*> {};

TEST_P(DiceCEParity, dice_ce_loss_and_gradient_match_pytorch) {
  const std::string k = GetParam();
  auto fx = testing::load_fixture(testing::test_data("ops/dice_ce.bin"));
  const auto& z = fx.at(k + ".logits");  // [N, D, H, W, C]
  DiceCEParams p;
  p.N = static_cast<int>(z.shape[0]);
  p.C = static_cast<int>(z.shape[4]);
  p.S = z.shape[1] * z.shape[2] * z.shape[3];
  p.lambda_dice = fx.at(k + ".params").data[0];
  p.lambda_ce = fx.at(k + ".params").data[1];
  std::vector<float> logits = z.f32(), dz(logits.size());
  std::vector<uint8_t> target(fx.at(k + ".target").data.begin(), fx.at(k + ".target").data.end());
  DiceCEResult r = dice_ce_fwd_bwd_cpu(p, logits.data(), target.data(), dz.data());
  // All in double from the same fp32 logits: only summation order (K = N*S*C terms) and libm exp/log differ.
  const double lrtol = 16 * std::sqrt(static_cast<double>(p.N * p.S * p.C)) * std::ldexp(1.0, -53);
  for (auto [name, got] : {std::pair{"loss", r.loss}, {"dice", r.dice}, {"ce", r.ce}}) {
    const double ref = fx.at(k + "." + name).data[0];
    EXPECT_NEAR(got, ref, lrtol * std::fabs(ref)) << k << " " << name;
    std::cout << "[ parity   ] dice_ce " << k << " " << name << ": " << got << " vs torch " << ref << ", rel err "
              << std::fabs(got / ref - 1) << "\n";
  }
  // The gradient is computed in double and rounded once: rtol 2u, atol 2u * rms(ref) for near-cancelling terms.
  const auto& ref = fx.at(k + ".dlogits").data;
  const double rtol = 2 * kUnitF32;
  testing::check_close("dice_ce " + k + " dlogits", dz.data(), ref.data(), static_cast<int64_t>(ref.size()), rtol,
                       rtol * testing::rms(ref), 4 * rtol * rtol);
  // grad_scale (the AMP loss scale) multiplies the gradient; a power of two does so exactly.
  std::vector<float> dz_scaled(dz.size());
  DiceCEResult r2 = dice_ce_fwd_bwd_cpu(p, logits.data(), target.data(), dz_scaled.data(), 1024.f);
  EXPECT_EQ(r2.loss, r.loss);  // the loss itself is not scaled
  for (size_t i = 0; i < dz.size(); ++i) ASSERT_EQ(dz_scaled[i], 1024.f * dz[i]) << i;
}
INSTANTIATE_TEST_SUITE_P(ops, DiceCEParity, ::testing::Values("c2", "empty_fg", "c3_lambda"));

// A confident, correct prediction: dice -> 0 (smooth_nr == smooth_dr keeps it exactly (2G+nr)/(2G+dr) = 1)
// and CE = log(1 + e^-40) = 4.2e-18, which double arithmetic (logsumexp 20 + 4e-18, minus 20) returns as 0, as torch
// does: the bound is one ulp of 20.
TEST(dice_ce, perfect_prediction_has_near_zero_loss) {
  DiceCEParams p;
  p.N = 1, p.C = 2, p.S = 8;
  std::vector<uint8_t> t = {0, 1, 1, 0, 1, 0, 0, 1};
  std::vector<float> z(16);
  for (int s = 0; s < 8; ++s) z[s * 2 + t[s]] = 20.f, z[s * 2 + 1 - t[s]] = -20.f;
  DiceCEResult r = dice_ce_fwd_bwd_cpu(p, z.data(), t.data(), nullptr);
  EXPECT_NEAR(r.ce, std::log1p(std::exp(-40.0)), 20 * std::ldexp(1.0, -52));
  EXPECT_NEAR(r.dice, 0.0, 1e-15);
  EXPECT_NEAR(r.loss, r.dice + r.ce, 1e-15);
}

// Spleen absent (all targets 0) and a uniform prediction (all logits 0, p = 1/2): per sample
//   Dice_bg = 1 - (2*(S/2) + nr)/(S + S/2 + dr),  Dice_fg = 1 - nr/(0 + S/2 + dr)  (contributes ~1),  CE = log 2.
TEST(dice_ce, empty_foreground_uniform_prediction_matches_the_formula) {
  DiceCEParams p;
  p.N = 2, p.C = 2, p.S = 10;
  std::vector<uint8_t> t(20, 0);
  std::vector<float> z(40, 0.f), dz(40);
  DiceCEResult r = dice_ce_fwd_bwd_cpu(p, z.data(), t.data(), dz.data());
  const double S = 10, nr = 1e-5, dr = 1e-5;
  const double dice_bg = 1 - (2 * (S / 2) + nr) / (S + S / 2 + dr), dice_fg = 1 - nr / (S / 2 + dr);
  EXPECT_NEAR(r.dice, (dice_bg + dice_fg) / 2, 1e-15);
  EXPECT_NEAR(r.ce, std::log(2.0), 1e-15);
  EXPECT_NEAR(r.loss, r.dice + r.ce, 1e-15);
  // The gradient pushes every voxel towards background: dL/dz_bg < 0, dL/dz_fg = -dL/dz_bg (softmax of 2).
  for (int i = 0; i < 20; ++i) {
    EXPECT_LT(dz[2 * i], 0.f);
    EXPECT_EQ(dz[2 * i + 1], -dz[2 * i]);
  }
}

TEST(dice_ce, gradient_matches_finite_differences) {
  DiceCEParams p;
  p.N = 2, p.C = 3, p.S = 6;
  p.lambda_dice = 0.7, p.lambda_ce = 1.3;
  const int64_t n = p.N * p.S * p.C;
  std::vector<float> z = testing::random_vector(n, 91, -2.f, 2.f), dz(n);
  testing::grid_inputs(z);
  std::vector<uint8_t> t = {0, 1, 2, 2, 1, 0, 0, 0, 0, 0, 0, 2};  // sample 1: class 1 absent
  dice_ce_fwd_bwd_cpu(p, z.data(), t.data(), dz.data());
  auto fwd = [&](const std::vector<float>& v) {
    return std::vector<double>{dice_ce_fwd_bwd_cpu(p, v.data(), t.data(), nullptr).loss};
  };
  // the loss is a double: output roundoff ~1e-16; the analytic gradient is fp32 (rtol >= 2u)
  EXPECT_GRADCHECK_NAMED(dex::str("dice_ce d", "z"), testing::gradcheck(z, fwd, std::vector<float>{1.f}, dz, std::ldexp(1.0, -6), 4 * kUnitF32,
                                      std::ldexp(1.0, -52)));
}

TEST(dice_ce, invalid_input_throws) {
  DiceCEParams p;
  p.N = 1, p.C = 2, p.S = 3;
  std::vector<float> z(6, 0.f), dz(6);
  std::vector<uint8_t> t = {0, 2, 1};  // label 2 with two classes
  EXPECT_THROW(dice_ce_fwd_bwd_cpu(p, z.data(), t.data(), dz.data()), InputError);
  t[1] = 1;
  EXPECT_NO_THROW(dice_ce_fwd_bwd_cpu(p, z.data(), t.data(), dz.data()));
  EXPECT_THROW(dice_ce_fwd_bwd_cpu(p, nullptr, t.data(), dz.data()), Error);
  DiceCEParams bad = p;
  bad.S = 0;
  EXPECT_THROW(dice_ce_fwd_bwd_cpu(bad, z.data(), t.data(), dz.data()), Error);
}

}  // namespace
}  // namespace dex
