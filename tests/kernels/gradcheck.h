// Central finite differences in double for fp32 kernels (STYLE.md §2 "Gradients").
//
// For an op y = f(x) and a random linear functional L(x) = sum_j w_j y_j(x), the analytic backward run with
// dy = w must give dx_i = dL/dx_i. gradcheck() perturbs each input element with the 4-point stencil
//   dL/dx_i ~ (-L(x+2h e_i) + 8 L(x+h e_i) - 8 L(x-h e_i) + L(x-2h e_i)) / (12 h)   (truncation O(h^4)),
// evaluating L in double from the op's fp32 outputs. Keep inputs on a coarse binary grid (grid_inputs) and h a
// power of two so that x +- k*h is exact in fp32. The tolerance is derived, not guessed:
//   noise_i = sqrt(1 + 64 + 64 + 1)/(12 h) * u * sqrt(sum_j (w_j y_j)^2)
//     (the fp32 output roundings, each at most u*|y_j|, are independent across outputs and evaluations: their
//      standard deviation is u/sqrt(3) per output; `safety` = 8 puts the bound far in the tail)
//   |fd_i - analytic_i| <= safety * noise_i + rtol * |analytic_i| + rtol * rms(analytic)
// where rtol covers the truncation term and the backward's own fp32 rounding.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/common.h"
#include "tests/testing.h"

namespace dex::testing {

struct GradCheckResult {
  bool ok = true;
  double worst_ratio = 0;       // max over i of |fd - analytic| / bound
  double max_rel = 0;           // max |fd - analytic| / max(|fd|, rms) (for the report)
  int64_t worst_index = -1;
  double worst_fd = 0, worst_analytic = 0;
  std::string message;
};

// Rounds each value to a multiple of 2^-grid_bits, so x +- 2h stays exact in fp32 for h >= 2^-grid_bits.
inline void grid_inputs(std::vector<float>& x, int grid_bits = 12) {
  const double q = std::ldexp(1.0, grid_bits);
  for (float& v : x) v = static_cast<float>(std::nearbyint(v * q) / q);
}

// Keeps |x| >= margin (for ops with a kink at 0): values inside (-margin, margin) are pushed out, sign kept.
inline void away_from_zero(std::vector<float>& x, float margin) {
  for (float& v : x)
    if (std::fabs(v) < margin) v = v < 0 ? v - margin : v + margin;
}

// L = sum_j w_j y_j in double.
inline double dot_f64(const std::vector<double>& y, const std::vector<float>& w) {
  DEX_CHECK(y.size() == w.size(), "gradcheck: output has ", y.size(), " elements, functional has ", w.size());
  double s = 0;
  for (size_t j = 0; j < y.size(); ++j) s += static_cast<double>(w[j]) * y[j];
  return s;
}
inline double rss_dot_f64(const std::vector<double>& y, const std::vector<float>& w) {
  double s = 0;
  for (size_t j = 0; j < y.size(); ++j) s += std::pow(static_cast<double>(w[j]) * y[j], 2);
  return std::sqrt(s);
}

// fwd(x) returns the op's outputs as double (fp32 values widened, or a double result such as a loss).
// `out_unit_roundoff`: the rounding of those outputs (2^-24 for fp32 outputs, about 1e-15 for a double loss).
inline GradCheckResult gradcheck(std::vector<float> x, const std::function<std::vector<double>(const std::vector<float>&)>& fwd,
                                 const std::vector<float>& w, const std::vector<float>& analytic, double h,
                                 double rtol, double out_unit_roundoff = std::ldexp(1.0, -24), double safety = 8.0) {
  DEX_CHECK(x.size() == analytic.size(), "gradcheck: ", x.size(), " inputs but ", analytic.size(), " gradients");
  GradCheckResult r;
  double rms = 0;
  for (float a : analytic) rms += static_cast<double>(a) * a;
  rms = std::sqrt(rms / std::max<size_t>(1, analytic.size()));
  const double noise_scale = out_unit_roundoff * std::sqrt(130.0) / (12.0 * h);
  for (size_t i = 0; i < x.size(); ++i) {
    const float x0 = x[i];
    double L[4], mag = 0;
    const double offs[4] = {2 * h, h, -h, -2 * h};
    for (int k = 0; k < 4; ++k) {
      x[i] = static_cast<float>(x0 + offs[k]);
      DEX_CHECK(static_cast<double>(x[i]) == x0 + offs[k], "gradcheck: x +- h not exact in fp32 at input ", i,
                " (put the inputs on a grid with grid_inputs)");
      std::vector<double> y = fwd(x);
      L[k] = dot_f64(y, w);
      mag = std::max(mag, rss_dot_f64(y, w));
    }
    x[i] = x0;
    const double fd = (-L[0] + 8 * L[1] - 8 * L[2] + L[3]) / (12 * h);
    const double a = analytic[i];
    const double err = std::fabs(fd - a);
    const double bound = safety * noise_scale * mag + rtol * (std::fabs(a) + rms);
    const double ratio = err / bound;
    r.max_rel = std::max(r.max_rel, err / std::max(std::fabs(fd), rms));
    if (ratio > r.worst_ratio) {
      r.worst_ratio = ratio;
      r.worst_index = static_cast<int64_t>(i);
      r.worst_fd = fd;
      r.worst_analytic = a;
    }
  }
  r.ok = r.worst_ratio <= 1.0;
  if (r.worst_index < 0)
    r.message = str("ok: finite differences equal the analytic gradient exactly at all ", x.size(), " inputs");
  else
    r.message = str(r.ok ? "ok" : "FAILED", ": worst input ", r.worst_index, " finite difference ", r.worst_fd,
                    " analytic ", r.worst_analytic, " at ", r.worst_ratio * 100, "% of its bound; max rel err ",
                    r.max_rel);
  return r;
}

// ---- parity helper shared by the op tests ------------------------------------------------------------
constexpr double kUnitF32 = 5.9604644775390625e-08;  // 2^-24

// STYLE.md §2 check (elementwise atol + rtol*|ref| and NMSE ceiling) that also prints the worst relative error
// under `what`, for the report. Returns the compare result.
template <class A, class B>
CompareResult check_close(const std::string& what, const A* x, const B* r, int64_t n, double rtol, double atol,
                          double nmse_max) {
  CompareResult c = compare(x, r, n, rtol, atol, nmse_max);
  EXPECT_TRUE(c.ok) << what << ": " << c.message;
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(r[i]) * static_cast<double>(r[i]);
  const double rms_ref = n > 0 ? std::sqrt(ss / n) : 0;
  std::cout << "[ parity   ] " << what << ": max rel err " << c.max_rel << ", max abs err " << c.max_abs
            << " (= " << (rms_ref > 0 ? c.max_abs / rms_ref : 0) << " rms(ref)); " << c.message << "\n";
  return c;
}

}  // namespace dex::testing

// EXPECT_GRADCHECK(result) / EXPECT_GRADCHECK_NAMED(what, result): fail with the worst element, print it on success.
#define EXPECT_GRADCHECK(res) EXPECT_GRADCHECK_NAMED("gradient", res)
#define EXPECT_GRADCHECK_NAMED(what, res)                                            \
  do {                                                                               \
    auto _g = (res);                                                                 \
    EXPECT_TRUE(_g.ok) << (what) << ": " << _g.message;                              \
    if (_g.ok) std::cout << "[ gradchk  ] " << (what) << ": " << _g.message << "\n"; \
  } while (0)
