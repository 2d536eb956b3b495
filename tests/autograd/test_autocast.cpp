// Autocast (Tape::set_autocast): conv3d and conv_transpose3d forward and backward with 16-bit operands and fp32
// accumulation, on the CPU backend's exact emulation (kernels/cpu/backend_cpu.cpp).
//   exactness: small-integer operands whose every sum fits the 16-bit exact-integer range (2^11 fp16, 2^8 bf16)
//              give bit-equal y, dx, dw to the fp32 tape and to the plain-loop reference, through both gradient
//              write modes (an activation's first writer overwrites, a parameter-like input accumulates);
//   numeric:   random real operands against the double-accumulating reference fed the same 16-bit-rounded
//              operands (STYLE.md §2: rtol = 2 u_out + sqrt(K) u_acc, atol = rtol * rms(ref)), and against the
//              reference on the unrounded operands with the first-order bound of operand rounding; y and dx are
//              16-bit values and differ from the fp32 path (autocast really rounds), dw is fp32.
#include <cmath>
#include <cstdio>

#include "autograd/ops/conv3d.h"
#include "autograd/ops/conv_transpose3d.h"
#include "autograd/tape.h"
#include "kernels/half.h"
#include "tests/autograd/autocast_cases.h"
#include "tests/testing.h"

using namespace dex;
using namespace dex::testing;

namespace {

using Case = ConvCase;

const Case kCases[] = {
    {"conv3d k3 s1 p1", false, 1, 8, 6, 5, 4, 6, 3, 1, 1},
    {"conv3d k3 s2 p1", false, 2, 4, 8, 6, 6, 5, 3, 2, 1},
    {"conv3d k1 (head)", false, 1, 6, 2, 4, 3, 5, 1, 1, 0},
    {"conv_transpose3d k2 s2", true, 1, 8, 4, 3, 2, 3, 2, 2, 0},
};

// Longest reduction of each pass (an upper bound: fprop C*taps, dgrad K*taps, wgrad the output voxels).
int64_t red_fprop(const Case& c) { return int64_t(c.C) * c.k * c.k * c.k; }
int64_t red_dgrad(const Case& c) { return int64_t(c.K) * c.k * c.k * c.k; }
int64_t red_wgrad(const Case& c) { return std::max(out_elems(c) / c.K, in_elems(c) / c.C); }

struct Grads {
  std::vector<float> y, dx, dw;
};

// y = conv(x, w) on a tape with autocast `ac`, backward seeded with dy. `x_param`: x is parameter-like (its
// gradient accumulates onto gx0); otherwise x is a tape activation whose gradient buffer holds NaN (overwritten).
// w's gradient accumulates onto gw0.
Grads run_tape(const Case& c, DType ac, const std::vector<float>& x, const std::vector<float>& w,
               const std::vector<float>& dy, bool x_param, const std::vector<float>& gx0,
               const std::vector<float>& gw0) {
  Arena arena;
  Tape tape(arena);
  tape.set_autocast(ac);
  std::vector<float> xd = x, xg = gx0, wd = w, wg = gw0;
  Tensor xt = ndhwc(c.N, c.D, c.H, c.W, c.C);
  if (x_param) {
    xt.data = xd.data();
    xt.grad = xg.data();
  } else {
    xt = tape.alloc(xt, true);
    std::copy(x.begin(), x.end(), xt.data);
    std::fill(xt.grad, xt.grad + xt.numel(), NAN);
  }
  Tensor wt({c.K, c.k, c.k, c.k, c.C}, Layout::Weight);
  wt.data = wd.data();
  wt.grad = wg.data();
  const int st[3] = {c.s, c.s, c.s}, pd[3] = {c.p, c.p, c.p};
  Tensor y = c.transposed ? conv_transpose3d(tape, xt, wt, st, pd) : conv3d(tape, xt, wt, st, pd);
  EXPECT_EQ(y.numel(), static_cast<int64_t>(dy.size()));
  std::copy(dy.begin(), dy.end(), y.grad);
  tape.mark_written(y);
  Grads g;
  g.y.assign(y.data, y.data + y.numel());
  tape.backward();
  g.dx.assign(xt.grad, xt.grad + xt.numel());
  g.dw = wg;
  return g;
}

// The plain-loop reference (double accumulation): y, dx (overwritten), dw (overwritten).
Grads reference(const Case& c, const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& dy) {
  Grads r;
  r.y.resize(static_cast<size_t>(out_elems(c)));
  r.dx.resize(x.size());
  r.dw.resize(w.size());
  const auto ref = CpuConvImpl::Reference;
  if (c.transposed) {
    const auto p = params_of<ConvTranspose3dParams>(c);
    conv_transpose3d_fprop_cpu(p, x.data(), w.data(), r.y.data(), ref);
    conv_transpose3d_dgrad_cpu(p, dy.data(), w.data(), r.dx.data(), GradMode::Overwrite, ref);
    conv_transpose3d_wgrad_cpu(p, x.data(), dy.data(), r.dw.data(), GradMode::Overwrite, ref);
  } else {
    const auto p = params_of<Conv3dParams>(c);
    conv3d_fprop_cpu(p, x.data(), w.data(), r.y.data(), ref);
    conv3d_dgrad_cpu(p, dy.data(), w.data(), r.dx.data(), GradMode::Overwrite, ref);
    conv3d_wgrad_cpu(p, x.data(), dy.data(), r.dw.data(), GradMode::Overwrite, ref);
  }
  return r;
}

std::vector<float> rounded(const std::vector<float>& v, DType dt) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = dt == DType::F16 ? round_f16(v[i]) : round_bf16(v[i]);
  return r;
}
std::vector<float> absolute(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = std::fabs(v[i]);
  return r;
}
double rms_of(const std::vector<float>& v) { return rms(std::vector<double>(v.begin(), v.end())); }
double unit_roundoff(DType dt) { return dt == DType::F16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8); }

void expect_equal(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << what << "[" << i << "]";
}

// Every value survives a 16-bit round trip (it came out of a 16-bit tensor).
void expect_16bit_values(const std::vector<float>& v, DType dt, const std::string& what) {
  for (size_t i = 0; i < v.size(); ++i) {
    const float r = dt == DType::F16 ? round_f16(v[i]) : round_bf16(v[i]);
    ASSERT_EQ(v[i], r) << what << "[" << i << "] is not a " << dtype_name(dt) << " value";
  }
}

// |a - ref| <= bound_scale * m + u_out * |ref| elementwise, m the magnitude reference (sum of |terms|).
void expect_within_rounding_bound(const std::vector<float>& a, const std::vector<float>& ref,
                                  const std::vector<float>& mag, double bound_scale, double u_out,
                                  const std::string& what) {
  double worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double bound = bound_scale * mag[i] + u_out * std::fabs(ref[i]) + 1e-30;
    const double ratio = std::fabs(double(a[i]) - ref[i]) / bound;
    if (ratio > worst) { worst = ratio; wi = i; }
  }
  std::printf("[ bound    ] %-40s worst %6.2f%% of the operand-rounding bound\n", what.c_str(), 100 * worst);
  EXPECT_LE(worst, 1.0) << what << "[" << wi << "]: got " << a[wi] << ", exact " << ref[wi] << ", magnitude "
                        << mag[wi];
}

}  // namespace

TEST(Autocast, SetAutocastChecksTheDtype) {
  Arena arena;
  Tape tape(arena);
  EXPECT_EQ(tape.autocast(), DType::F32);
  EXPECT_THROW(tape.set_autocast(DType::U8), Error);
  tape.set_autocast(DType::F16);
  EXPECT_EQ(tape.autocast(), DType::F16);
  tape.set_autocast(DType::F32);
  EXPECT_EQ(tape.autocast(), DType::F32);
}

// Small integers: every product and sum is exact in fp16 / bf16 and fp32, so autocast == fp32 == reference bit for
// bit, in both gradient write modes.
TEST(Autocast, ExactOnSmallIntegerOperands) {
  for (DType dt : {DType::F16, DType::BF16}) {
    // fp16: |values| <= 2, C, K <= 8, 27 taps: sums <= 4 * 8 * 27 = 864 < 2^11. bf16: values in {-1,0,1}, sums
    // <= 8 * 27 = 216 < 2^8 (the transposed conv sums over C = 8 only).
    const int lim = dt == DType::F16 ? 2 : 1;
    for (const Case& c : kCases) {
      SCOPED_TRACE(std::string(c.name) + " " + dtype_name(dt));
      const auto x = random_ints(in_elems(c), 11, -lim, lim);
      const auto w = random_ints(w_elems(c), 12, -lim, lim);
      const auto dy = random_ints(out_elems(c), 13, -lim, lim);
      const auto gx0 = random_ints(in_elems(c), 14, -3, 3);
      const auto gw0 = random_ints(w_elems(c), 15, -3, 3);
      const Grads r = reference(c, x, w, dy);
      for (bool x_param : {false, true}) {
        const Grads a = run_tape(c, dt, x, w, dy, x_param, gx0, gw0);
        const Grads f = run_tape(c, DType::F32, x, w, dy, x_param, gx0, gw0);
        expect_equal(a.y, f.y, "y vs fp32");
        expect_equal(a.dx, f.dx, "dx vs fp32");
        expect_equal(a.dw, f.dw, "dw vs fp32");
        expect_equal(a.y, r.y, "y vs reference");
        std::vector<float> dx_ref = r.dx, dw_ref = r.dw;
        for (size_t i = 0; i < dw_ref.size(); ++i) dw_ref[i] += gw0[i];
        if (x_param)
          for (size_t i = 0; i < dx_ref.size(); ++i) dx_ref[i] += gx0[i];
        expect_equal(a.dx, dx_ref, x_param ? "dx (accumulated) vs reference" : "dx (overwritten) vs reference");
        expect_equal(a.dw, dw_ref, "dw (accumulated) vs reference");
      }
    }
  }
}

TEST(Autocast, RandomOperandsWithinTheDerived16BitTolerance) {
  const double u32 = std::ldexp(1.0, -24);
  for (DType dt : {DType::F16, DType::BF16}) {
    const double u = unit_roundoff(dt);
    const double nmse_max = dt == DType::F16 ? 1e-6 : 3e-5;  // STYLE.md §2 table
    for (const Case& c : kCases) {
      const std::string tag = std::string(c.name) + " " + dtype_name(dt);
      SCOPED_TRACE(tag);
      const auto x = random_vector(in_elems(c), 21);
      const auto w = random_vector(w_elems(c), 22);
      const auto dy = random_vector(out_elems(c), 23);
      const std::vector<float> gx0(x.size(), 0.f), gw0(w.size(), 0.f);
      const Grads a = run_tape(c, dt, x, w, dy, false, gx0, gw0);
      const Grads f = run_tape(c, DType::F32, x, w, dy, false, gx0, gw0);
      // 1. Against the reference on the same rounded operands: output rounding and summation order only.
      const Grads r = reference(c, rounded(x, dt), rounded(w, dt), rounded(dy, dt));
      const double rt_y = 2 * u + std::sqrt(double(red_fprop(c))) * u32;
      const double rt_dx = 2 * u + std::sqrt(double(red_dgrad(c))) * u32;
      const double rt_dw = 2 * u32 + std::sqrt(double(red_wgrad(c))) * u32;
      EXPECT_CLOSE(a.y.data(), r.y.data(), int64_t(r.y.size()), rt_y, rt_y * rms_of(r.y), nmse_max);
      EXPECT_CLOSE(a.dx.data(), r.dx.data(), int64_t(r.dx.size()), rt_dx, rt_dx * rms_of(r.dx), nmse_max);
      EXPECT_CLOSE(a.dw.data(), r.dw.data(), int64_t(r.dw.size()), rt_dw, rt_dw * rms_of(r.dw), 1e-10);
      // 2. y and dx came out of 16-bit tensors, and autocast is not the fp32 path.
      expect_16bit_values(a.y, dt, "y");
      expect_16bit_values(a.dx, dt, "dx");
      int differ = 0;
      for (size_t i = 0; i < a.dw.size(); ++i) differ += a.dw[i] != f.dw[i];
      EXPECT_GT(differ, 0) << "autocast dw equals the fp32 dw everywhere: the operands were not rounded";
      // 3. Against the exact reference on the unrounded operands: each product of two rounded operands is off by
      //    at most (2u + u^2) of its magnitude, summation adds sqrt(K) u32 of it (generous: K u32 is the strict
      //    bound, far below the operand term here), and a 16-bit output adds u of |result|.
      const Grads e = reference(c, x, w, dy);
      const Grads m = reference(c, absolute(x), absolute(w), absolute(dy));
      const double opnd = 2 * u + u * u;
      expect_within_rounding_bound(a.y, e.y, m.y, opnd + red_fprop(c) * u32, 1.01 * u, tag + " y");
      expect_within_rounding_bound(a.dx, e.dx, m.dx, opnd + red_dgrad(c) * u32, 1.01 * u, tag + " dx");
      expect_within_rounding_bound(a.dw, e.dw, m.dw, opnd + red_wgrad(c) * u32, 2 * u32, tag + " dw");
    }
  }
}

// Under no-grad (inference, the click-simulation forward) the 16-bit copies are scratch: the arena ends where the
// fp32 forward ends.
TEST(Autocast, NoGradForwardKeepsNoScratch) {
  const Case& c = kCases[0];
  const auto x = random_vector(in_elems(c), 31);
  auto w = random_vector(w_elems(c), 32);
  size_t used[2];
  for (int i = 0; i < 2; ++i) {
    Arena arena;
    Tape tape(arena);
    tape.set_autocast(i ? DType::F16 : DType::F32);
    NoGradGuard ng(tape);
    Tensor xt = tape.alloc(ndhwc(c.N, c.D, c.H, c.W, c.C), false);
    std::copy(x.begin(), x.end(), xt.data);
    Tensor wt({c.K, c.k, c.k, c.k, c.C}, Layout::Weight);
    wt.data = w.data();
    const int st[3] = {1, 1, 1}, pd[3] = {1, 1, 1};
    conv3d(tape, xt, wt, st, pd);
    used[i] = arena.used();
  }
  EXPECT_EQ(used[1], used[0]);
}
