// Whole-model parity against the PyTorch reference of scripts/gen_fixtures_dynunet.py (MONAI's DynUNet in plain
// torch, same names): the tiny network's logits, Dice+CE loss and every parameter gradient (reference in
// float64 from the same float32 weights and input), the same logits from the torch.save'd model.pt, and the
// full-size network's 128^3 forward with closed-form weights (statistics + 1000 sampled voxels).
#include <chrono>
#include <cmath>

#include "autograd/ops/dice_ce.h"
#include "autograd/tape.h"
#include "layers/init.h"
#include "layers/torch_checkpoint.h"
#include "tests/layers/dynunet_testing.h"

using namespace dex;
using namespace dex::testing;

namespace {

// Tolerance for a quantity computed by the fp32 network (STYLE.md §2 form, atol = rtol * rms(ref), the reference
// in float64): per layer the fp32 error is about sqrt(K) * u with K the longest reduction (K = 27 * 32 = 864 at
// the widest full-size layers; 432 in the tiny net), independent rounding errors add up like a random walk over
// the 16 conv layers of the longest path (sqrt(16) = 4), and instance norm rescales by rstd (up to ~10x over the
// 16 bottleneck voxels). So rtol = 4 * sqrt(864) * u * 10 = 7e-5 for activations, the loss and the gradients;
// the worst tiny-net tensor measured sits at about 17% of it (all printed per tensor).
constexpr double kU32 = 5.96e-8;
constexpr double kNetRtol = 4 * 29.4 * kU32 * 10;  // 7e-5

struct Tiny {
  std::map<std::string, FixtureTensor> fx = load_fixture(test_data("dynunet/tiny.fix"));
  int64_t N, C, D, H, W, S;
  Tiny() {
    const auto& xs = fx.at("x").shape;  // [N][3][D][H][W]
    N = xs[0]; C = xs[1]; D = xs[2]; H = xs[3]; W = xs[4]; S = D * H * W;
  }
  std::vector<float> x_ndhwc() const { return ncs_to_nsc(fx.at("x").data, N, C, S); }
  std::vector<uint8_t> target() const {
    const auto& t = fx.at("target").data;
    return std::vector<uint8_t>(t.begin(), t.end());
  }
};

void expect_tensor_close(const std::string& what, const float* got, const std::vector<double>& ref, double rtol) {
  const double atol = rtol * rms(ref);
  auto c = compare(got, ref.data(), static_cast<int64_t>(ref.size()), rtol, atol, rtol * rtol);
  EXPECT_TRUE(c.ok) << what << ": " << c.message;
  std::printf("[ parity   ] %-48s worst %6.2f%% of bound (max abs %.3g, rms(ref) %.3g), NMSE %.3g\n", what.c_str(),
              100 * c.worst_ratio, c.max_abs, rms(ref), c.nmse);
}

}  // namespace

TEST(DynUNetParity, TinyForwardLossAndGradientsMatchTorch) {
  Tiny t;
  DynUNet net(tiny_dynunet_config());
  net.load_state_dict(fixture_state_dict(t.fx, "w."));
  Arena arena;
  Tape tape(arena);
  Tensor x = tape.alloc(ndhwc(t.N, t.D, t.H, t.W, t.C), false);
  std::vector<float> xv = t.x_ndhwc();
  std::copy(xv.begin(), xv.end(), x.data);
  std::vector<uint8_t> target = t.target();

  Tensor logits = net.forward(tape, x);
  DiceCEResult r;
  Tensor loss = dice_ce(tape, logits, target.data(), &r);
  loss.grad[0] = 1.0f;
  tape.mark_written(loss);
  tape.backward();

  std::vector<double> got_logits = nsc_to_ncs(logits.data, t.N, 2, t.S);
  std::vector<float> gl(got_logits.begin(), got_logits.end());
  expect_tensor_close("logits", gl.data(), t.fx.at("logits").data, kNetRtol);
  // Loss: a mean over S voxels of per-voxel terms each within kNetRtol: same relative bound.
  const double ref_loss = t.fx.at("loss").data[0];
  EXPECT_NEAR(r.loss, ref_loss, kNetRtol * std::fabs(ref_loss));
  EXPECT_NEAR(r.dice, t.fx.at("dice").data[0], kNetRtol * std::fabs(ref_loss));
  EXPECT_NEAR(r.ce, t.fx.at("ce").data[0], kNetRtol * std::fabs(ref_loss));
  std::printf("[ parity   ] loss %.9f (torch f64 %.9f), rel err %.3g\n", r.loss, ref_loss,
              std::fabs(r.loss - ref_loss) / ref_loss);

  const ParameterSet& ps = net.parameters();
  for (int i = 0; i < ps.size(); ++i) {
    const std::string& name = ps.spec(i).name;
    std::vector<float> g = ps.grad_torch(i);  // PyTorch layout
    expect_tensor_close("grad " + name, g.data(), t.fx.at("g." + name).data, kNetRtol);
  }
}

TEST(DynUNetParity, TorchSavedModelPtGivesTheSameLogits) {
  Tiny t;
  DynUNet a(tiny_dynunet_config()), b(tiny_dynunet_config());
  a.load_state_dict(fixture_state_dict(t.fx, "w."));
  StateDict pt = load_torch_checkpoint(test_data("dynunet/tiny_model.pt"));  // with skip_layers aliases
  EXPECT_GT(pt.size(), size_t(a.parameters().size()));
  b.load_state_dict(pt);
  EXPECT_EQ(0, std::memcmp(a.parameters().values(), b.parameters().values(), a.parameters().bytes()));
  Arena arena;
  Tape tape(arena);
  NoGradGuard ng(tape);
  Tensor x = tape.alloc(ndhwc(t.N, t.D, t.H, t.W, t.C), false);
  std::vector<float> xv = t.x_ndhwc();
  std::copy(xv.begin(), xv.end(), x.data);
  Tensor ya = a.forward(tape, x), yb = b.forward(tape, x);
  EXPECT_EQ(0, std::memcmp(ya.data, yb.data, ya.bytes()));
  std::vector<double> got = nsc_to_ncs(yb.data, t.N, 2, t.S);
  std::vector<float> gf(got.begin(), got.end());
  expect_tensor_close("model.pt logits", gf.data(), t.fx.at("logits").data, kNetRtol);
}

uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The full-size reference is torch's float32 forward (float64 does not fit: torch's CPU conv3d builds ~29 GB
// im2col buffers), so both sides carry fp32 error: the bound of kNetRtol over the 22 conv layers of the full
// network's longest path (sqrt(22) instead of sqrt(16)) and two independent sides (sqrt(2)): 7e-5 * 1.17 * 1.41.
constexpr double kFullRtol = kNetRtol * 1.17 * 1.41;  // 1.2e-4

// Closed-form weights and input of gen_fixtures_dynunet.py (closed_form_weight / closed_form_input).
TEST(DynUNetParity, FullSize128ForwardMatchesTorchStatistics) {
  auto fx = load_fixture(test_data("dynunet/full128.fix"));
  DynUNet net;
  ParameterSet& ps = net.parameters();
  StateDict sd = net.state_dict();  // sorted names = the script's layer ids
  int lid = 0;
  for (auto& kv : sd) {
    const ParamSpec& s = ps.spec(ps.index_of(kv.first));
    const double std = s.kind == ParamKind::Bias ? 0.1 : kaiming_std(s);
    for (size_t i = 0; i < kv.second.data.size(); ++i) {
      const double u = double(splitmix64(uint64_t(i) + (uint64_t(lid) << 32)) >> 11) * 0x1p-53;
      kv.second.data[i] = static_cast<float>(std * std::sqrt(3.0) * (2.0 * u - 1.0));
    }
    ++lid;
  }
  net.load_state_dict(sd);
  const int n = 128;
  const int64_t S = int64_t(n) * n * n;
  Arena arena;
  Tape tape(arena);
  NoGradGuard ng(tape);
  Tensor x = tape.alloc(ndhwc(1, n, n, n, 3), false);
  for (int d = 0; d < n; ++d)
    for (int h = 0; h < n; ++h)
      for (int w = 0; w < n; ++w)
        for (int c = 0; c < 3; ++c)
          x.data[((int64_t(d) * n + h) * n + w) * 3 + c] = static_cast<float>(
              std::sin(0.05 * d + 0.07 * (c + 1) * h + 0.11 * w + c) * std::cos(0.03 * (d - w) * (c + 1)));
  auto t0 = std::chrono::steady_clock::now();
  Tensor y = net.forward(tape, x);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ full128  ] forward %.1f s, arena peak %.2f GiB\n", secs, arena.peak() / double(1 << 30));

  // Statistics over 2M voxels: fp32 summation order differs, the values agree to kFullRtol each.
  for (int c = 0; c < 2; ++c) {
    double sum = 0, sq = 0, mn = INFINITY, mx = -INFINITY;
    for (int64_t s = 0; s < S; ++s) {
      double v = y.data[s * 2 + c];
      sum += v; sq += v * v; mn = std::min(mn, v); mx = std::max(mx, v);
    }
    const double mean = sum / S, sd = std::sqrt(sq / S - mean * mean);
    const double ref_sd = fx.at("std").data[c];
    const double tol = kFullRtol * ref_sd;  // every logit within rtol*rms(ref); the statistics move by no more
    std::printf("[ full128  ] channel %d: mean %.6g (torch %.6g) std %.6g (%.6g) min %.6g (%.6g) max %.6g (%.6g)\n", c,
                mean, fx.at("mean").data[c], sd, ref_sd, mn, fx.at("min").data[c], mx, fx.at("max").data[c]);
    EXPECT_NEAR(mean, fx.at("mean").data[c], tol);
    EXPECT_NEAR(sd, ref_sd, tol);
    EXPECT_NEAR(mn, fx.at("min").data[c], tol);
    EXPECT_NEAR(mx, fx.at("max").data[c], tol);
  }
  const auto& idx = fx.at("sample_index").data;
  const auto& ref = fx.at("sample").data;  // [1000][2]
  std::vector<float> got(ref.size());
  for (size_t i = 0; i < idx.size(); ++i)
    for (int c = 0; c < 2; ++c) got[i * 2 + c] = y.data[static_cast<int64_t>(idx[i]) * 2 + c];
  expect_tensor_close("full128 sampled logits", got.data(), ref, kFullRtol);
}
