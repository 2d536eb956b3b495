// CUDA autocast (Tape::set_autocast on the CUDA backend: the f16/bf16 conv launchers with fp32 accumulation,
// v2 tensor-core paths where they apply) against the CPU backend's exact emulation of the same recipe. Skips
// without a device (written and compiled without a GPU: no CUDA result has been observed yet).
//   - per op (conv3d and conv_transpose3d on DynUNet-like shapes, including C = K = 32 which takes the v2 paths):
//     small integers, bit-equal y, dx, dw in both gradient write modes; random operands, f16 and bf16, within
//     the STYLE.md §2 tolerance of 16-bit outputs with fp32 accumulation (the CPU emulation is the reference);
//   - the tiny DynUNet's autocast forward + Dice+CE + backward at loss scale 65536 against the CPU emulation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/ops/conv3d.h"
#include "autograd/ops/conv_transpose3d.h"
#include "autograd/ops/dice_ce.h"
#include "autograd/tape.h"
#include "kernels/backend.h"
#include "tests/autograd/autocast_cases.h"
#include "tests/layers/dynunet_testing.h"
#include "tests/testing.h"

using namespace dex;
using namespace dex::testing;

namespace {

// Skips the test, with the reason, where the CUDA backend is not available.
#define DEX_REQUIRE_CUDA()                                                   \
  do {                                                                       \
    std::string why_;                                                        \
    if (!backend_available(Device::CUDA, &why_))                             \
      GTEST_SKIP() << "CUDA backend not available: " << why_;                \
  } while (0)

using Case = ConvCase;

const Case kCases[] = {
    {"conv3d k3 s1 C8 K6", false, 1, 8, 6, 5, 4, 6, 3, 1, 1},
    {"conv3d k3 s2 C4 K8", false, 2, 4, 8, 6, 6, 5, 3, 2, 1},
    {"conv3d k3 s1 C32 K32 (v2)", false, 1, 32, 32, 6, 5, 7, 3, 1, 1},
    {"conv3d k3 s2 C32 K32 (v2)", false, 1, 32, 32, 8, 6, 6, 3, 2, 1},
    {"conv3d k1 C32 K2 (head)", false, 1, 32, 2, 4, 3, 5, 1, 1, 0},
    {"conv_transpose3d k2 s2 C8 K4", true, 1, 8, 4, 3, 2, 3, 2, 2, 0},
    {"conv_transpose3d k2 s2 C32 K32 (v2)", true, 1, 32, 32, 3, 4, 3, 2, 2, 0},
};

float* upload(Arena& arena, Device dev, const std::vector<float>& v) {
  float* d = arena.alloc<float>(v.size());
  backend(dev).copy(d, dev, v.data(), Device::CPU, v.size() * sizeof(float), nullptr);
  return d;
}
std::vector<float> download(Device dev, const float* d, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  backend(dev).copy(v.data(), Device::CPU, d, dev, v.size() * sizeof(float), nullptr);
  return v;
}

struct Grads {
  std::vector<float> y, dx, dw;
};

// y = conv(x, w) under autocast `ac` on `dev`, backward seeded with dy; x parameter-like (accumulates onto gx0) or
// a tape activation (its NaN-filled gradient overwritten); w's gradient accumulates onto gw0.
Grads run_conv(Device dev, const Case& c, DType ac, const std::vector<float>& x, const std::vector<float>& w,
               const std::vector<float>& dy, bool x_param, const std::vector<float>& gx0,
               const std::vector<float>& gw0) {
  Arena arena(*backend(dev).allocator, 0, "amp test");
  Tape tape(arena, dev);
  tape.set_autocast(ac);
  Tensor xt = ndhwc(c.N, c.D, c.H, c.W, c.C);
  if (x_param) {
    xt.device = dev;
    xt.data = upload(arena, dev, x);
    xt.grad = upload(arena, dev, gx0);
  } else {
    xt = tape.alloc(xt, true);
    backend(dev).copy(xt.data, dev, x.data(), Device::CPU, xt.bytes(), nullptr);
    const std::vector<float> nan(x.size(), NAN);
    backend(dev).copy(xt.grad, dev, nan.data(), Device::CPU, xt.bytes(), nullptr);
  }
  Tensor wt({c.K, c.k, c.k, c.k, c.C}, Layout::Weight);
  wt.device = dev;
  wt.data = upload(arena, dev, w);
  wt.grad = upload(arena, dev, gw0);
  const int st[3] = {c.s, c.s, c.s}, pd[3] = {c.p, c.p, c.p};
  Tensor y = c.transposed ? conv_transpose3d(tape, xt, wt, st, pd) : conv3d(tape, xt, wt, st, pd);
  backend(dev).copy(y.grad, dev, dy.data(), Device::CPU, y.bytes(), nullptr);
  tape.mark_written(y);
  Grads g;
  g.y = download(dev, y.data, y.numel());
  tape.backward();
  g.dx = download(dev, xt.grad, xt.numel());
  g.dw = download(dev, wt.grad, wt.numel());
  return g;
}

void expect_equal(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << what << "[" << i << "]";
}
double rms_of(const std::vector<float>& v) { return rms(std::vector<double>(v.begin(), v.end())); }

}  // namespace

// Values in {-1, 0, 1}: every sum (at most 32 channels x 27 taps = 864 terms) is an integer below 2^11, exact in
// fp16 and in any fp32 summation order, so CUDA and the CPU emulation agree bit for bit.
TEST(AmpCuda, ConvPassesBitEqualToCpuEmulationOnSmallIntegers) {
  DEX_REQUIRE_CUDA();
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const auto x = random_ints(in_elems(c), 41, -1, 1);
    const auto w = random_ints(w_elems(c), 42, -1, 1);
    const auto dy = random_ints(out_elems(c), 43, -1, 1);
    const auto gx0 = random_ints(in_elems(c), 44, -3, 3);
    const auto gw0 = random_ints(w_elems(c), 45, -3, 3);
    for (bool x_param : {false, true}) {
      const Grads g = run_conv(Device::CUDA, c, DType::F16, x, w, dy, x_param, gx0, gw0);
      const Grads r = run_conv(Device::CPU, c, DType::F16, x, w, dy, x_param, gx0, gw0);
      expect_equal(g.y, r.y, "y");
      expect_equal(g.dx, r.dx, "dx");
      expect_equal(g.dw, r.dw, "dw");
    }
  }
}

// Random operands: the same 16-bit operands on both sides, so only the fp32 summation order differs (both sides
// round the same way: 2 sqrt(K) u32 for the two orders) plus one 16-bit output rounding step (2 u16) for y and dx.
TEST(AmpCuda, ConvPassesMatchCpuEmulationOnRandomOperands) {
  DEX_REQUIRE_CUDA();
  const double u32 = std::ldexp(1.0, -24);
  for (DType dt : {DType::F16, DType::BF16}) {
    const double u = dt == DType::F16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    const double nmse_max = dt == DType::F16 ? 1e-6 : 3e-5;
    for (const Case& c : kCases) {
      SCOPED_TRACE(std::string(c.name) + " " + dtype_name(dt));
      const auto x = random_vector(in_elems(c), 51);
      const auto w = random_vector(w_elems(c), 52);
      const auto dy = random_vector(out_elems(c), 53);
      const std::vector<float> gx0(x.size(), 0.f), gw0(w.size(), 0.f);
      const Grads g = run_conv(Device::CUDA, c, dt, x, w, dy, false, gx0, gw0);
      const Grads r = run_conv(Device::CPU, c, dt, x, w, dy, false, gx0, gw0);
      const double taps = double(c.k) * c.k * c.k;
      const double rt_y = 2 * u + 2 * std::sqrt(c.C * taps) * u32;
      const double rt_dx = 2 * u + 2 * std::sqrt(c.K * taps) * u32;
      const double rt_dw = 2 * u32 + 2 * std::sqrt(double(std::max(out_elems(c) / c.K, in_elems(c) / c.C))) * u32;
      EXPECT_CLOSE(g.y.data(), r.y.data(), int64_t(r.y.size()), rt_y, rt_y * rms_of(r.y), nmse_max);
      EXPECT_CLOSE(g.dx.data(), r.dx.data(), int64_t(r.dx.size()), rt_dx, rt_dx * rms_of(r.dx), nmse_max);
      EXPECT_CLOSE(g.dw.data(), r.dw.data(), int64_t(r.dw.size()), rt_dw, rt_dw * rms_of(r.dw), 1e-10);
    }
  }
}

// The tiny DynUNet: autocast f16 forward, Dice+CE, backward seeded with GradScaler's 65536, CUDA vs the CPU
// emulation. This net amplifies rounding-order differences under fp16 (tests/train/test_amp.cpp: PyTorch's own
// emulation with float32 vs float64 accumulation moves its logits by 7.8e-4 and conv gradients by up to 3.1%;
// dex's CPU emulation vs PyTorch's: 7.8e-4 and up to 3.6%), so the bounds are those of test_amp.cpp; the output
// head's gradients (the forward's last activation) are the tight check, and a CUDA fp32 run must be far from them.
TEST(AmpCuda, TinyDynUNetStepMatchesCpuEmulation) {
  DEX_REQUIRE_CUDA();
  const auto fx = load_fixture(test_data("dynunet/tiny.fix"));
  const auto& sh = fx.at("x").shape;
  const int N = int(sh[0]), C = int(sh[1]), D = int(sh[2]), H = int(sh[3]), W = int(sh[4]);
  const int64_t S = int64_t(D) * H * W;
  const std::vector<float> x = ncs_to_nsc(fx.at("x").data, N, C, S);
  const std::vector<uint8_t> target(fx.at("target").data.begin(), fx.at("target").data.end());
  const float scale = 65536.0f;
  struct Out {
    double loss;
    std::vector<double> logits;
    std::vector<std::vector<float>> grads;
  };
  auto run = [&](Device dev, DType ac) {
    DynUNet net(tiny_dynunet_config(), dev);
    net.load_state_dict(fixture_state_dict(fx, "w."));
    net.parameters().zero_grad();
    Arena arena(*backend(dev).allocator, 0, "amp step");
    Tape tape(arena, dev);
    tape.set_autocast(ac);
    const Backend& be = backend(dev);
    Tensor xt = tape.alloc(ndhwc(N, D, H, W, C), false);
    be.copy(xt.data, dev, x.data(), Device::CPU, xt.bytes(), nullptr);
    uint8_t* t = arena.alloc<uint8_t>(target.size());
    be.copy(t, dev, target.data(), Device::CPU, target.size(), nullptr);
    Tensor logits = net.forward(tape, xt);
    DiceCEResult r;
    Tensor loss = dice_ce(tape, logits, t, &r);
    be.copy(loss.grad, dev, &scale, Device::CPU, sizeof(float), nullptr);
    tape.mark_written(loss);
    tape.backward();
    Out o;
    o.loss = r.loss;
    const std::vector<float> z = download(dev, logits.data, logits.numel());
    o.logits = nsc_to_ncs(z.data(), N, 2, S);
    for (int i = 0; i < net.parameters().size(); ++i) o.grads.push_back(net.parameters().grad_torch(i));
    return o;
  };
  const Out g = run(Device::CUDA, DType::F16);
  const Out r = run(Device::CPU, DType::F16);
  const Out g32 = run(Device::CUDA, DType::F32);
  auto rel = [](const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return std::sqrt(num / den);
  };
  auto d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  const double ez = rel(g.logits, r.logits);
  std::printf("[ amp cuda ] logits rel rms %.3g (CUDA fp32: %.3g), loss %.8f vs %.8f\n", ez,
              rel(g32.logits, r.logits), g.loss, r.loss);
  EXPECT_LE(ez, 2e-3);
  EXPECT_NEAR(g.loss, r.loss, 1e-5 * std::fabs(r.loss));
  DynUNet names(tiny_dynunet_config());
  for (size_t i = 0; i < r.grads.size(); ++i) {
    const std::string& name = names.parameters().spec(int(i)).name;
    const double e = rel(d(g.grads[i]), d(r.grads[i]));
    const double e32 = rel(d(g32.grads[i]), d(r.grads[i]));
    const bool head = name.rfind("output_block.", 0) == 0;
    std::printf("[ amp cuda ] %-44s gradient rel rms %.2e (CUDA fp32 %.2e)\n", name.c_str(), e, e32);
    EXPECT_LE(e, head ? 1e-4 : 0.06) << name;
    if (head) {
      EXPECT_GT(e32, 5 * e) << name << ": CUDA fp32 is as close to the autocast emulation as CUDA autocast";
    }
  }
}
