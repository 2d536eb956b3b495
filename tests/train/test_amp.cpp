// Mixed-precision training (autocast f16 + the dynamic loss scaler, spec §9) on the CPU backend's exact emulation
// of fp16 operands (Tape::set_autocast):
//   - one tiny DynUNet step against PyTorch running the same recipe (scripts/gen_fixtures_amp.py: every conv takes
//     fp16-rounded operands and rounds its activation outputs to fp16, the rest in float64; loss scale 65536);
//   - the loss scale is what keeps fp16 activation gradients from underflowing: unscaled gradients at scale s
//     match those at 65536 more closely as s grows (power-of-two scales are exact wherever fp16 stays normal);
//   - a real fp16 overflow (a huge scale makes dy infinite in fp16, not in fp32) skips the step, leaves the weights
//     alone and halves the scale until a step fits;
//   - the amp / amp_emulate config keys, and dex-train's Trainer with amp_emulate (autocast + loss scaler on the CPU).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>

#include "data/phantom.h"
#include "infer/cli_args.h"
#include "tests/layers/dynunet_testing.h"
#include "train/communicator.h"
#include "train/train_step.h"
#include "train/trainer.h"

using namespace dex;
using namespace dex::testing;

namespace {

LossScalerConfig scaler_config(bool enabled, float init_scale = 65536.0f) {
  LossScalerConfig c;
  c.enabled = enabled;
  c.init_scale = init_scale;
  return c;
}

struct AmpRun {
  DynUNet net;
  AdamOptimizer opt;
  LossScaler scaler;
  Arena arena;
  TrainStep step;
  AmpRun(const TinyBatch& b, DType autocast, const LossScalerConfig& sc)
      : net(tiny_dynunet_config()), opt(net.parameters()), scaler(sc), step(net, opt, scaler, arena) {
    net.load_state_dict(fixture_state_dict(b.fx, "w."));
    step.set_autocast(autocast);
  }
  TrainStepResult forward_backward(const TinyBatch& b) {
    return step.forward_backward(b.x.data(), b.target.data(), b.N, {b.D, b.H, b.W});
  }
  // Parameter i's gradient divided by the loss scale (GradScaler.unscale_), PyTorch layout.
  std::vector<double> unscaled_grad(int i, float scale) const {
    const std::vector<float> g = net.parameters().grad_torch(i);
    std::vector<double> out(g.size());
    for (size_t j = 0; j < g.size(); ++j) out[j] = double(g[j]) / scale;
    return out;
  }
};

// sqrt(sum (a - r)^2 / sum r^2)
double rel_rms(const std::vector<double>& a, const std::vector<double>& r) {
  double num = 0, den = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    num += (a[i] - r[i]) * (a[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

// The tiny net amplifies fp16 rounding-order differences: PyTorch's own emulation with float32 instead of float64
// accumulation moves the logits by 7.8e-4 and the conv weight gradients by 0.5% to 3.1% relative RMS
// (scripts/gen_fixtures_amp.py --sensitivity; fp16 rounding flips propagate through instance norms over a few
// voxels). dex accumulates in fp32, so the bounds below are those sensitivities with a margin (measured here: logits
// 7.8e-4, loss 4.4e-6 relative, conv gradients 0.7% to 3.6%). What tells autocast from fp32 is the output head's
// gradients (the forward's last activation and the logits): 2.1e-5 and 4.3e-6 for autocast, 2.9e-4 and 8.3e-5
// for dex's fp32 step (the fp32 step's logits 1.2e-3, loss 8.8e-6: not far enough apart to assert on).
TEST(AmpStep, EmulatedAutocastMatchesTorchAutocastEmulation) {
  TinyBatch b;
  const auto ref = load_fixture(test_data("dynunet/tiny_amp.fix"));
  const float scale = float(ref.at("loss_scale").data[0]);
  AmpRun amp(b, DType::F16, scaler_config(true, scale));
  AmpRun fp32(b, DType::F32, scaler_config(true, scale));
  TrainStepResult ra = amp.forward_backward(b);
  TrainStepResult rf = fp32.forward_backward(b);
  EXPECT_EQ(ra.loss_scale, scale);
  // logits (PyTorch NCDHW)
  const std::vector<double>& zref = ref.at("logits").data;
  const int64_t S = int64_t(b.D) * b.H * b.W;
  const double ez = rel_rms(nsc_to_ncs(ra.logits.data, b.N, 2, S), zref);
  const double ez32 = rel_rms(nsc_to_ncs(rf.logits.data, b.N, 2, S), zref);
  const double ref_loss = ref.at("loss").data[0];
  std::printf("[ amp      ] logits rel rms %.3g (fp32 step %.3g); loss %.8f, torch %.8f, fp32 step %.8f\n", ez, ez32,
              ra.loss.loss, ref_loss, rf.loss.loss);
  EXPECT_LE(ez, 2e-3);
  EXPECT_NEAR(ra.loss.loss, ref_loss, 1e-5 * ref_loss);
  const ParameterSet& ps = amp.net.parameters();
  for (int i = 0; i < ps.size(); ++i) {
    const std::string& name = ps.spec(i).name;
    const std::vector<double>& g = ref.at("g." + name).data;
    const double ea = rel_rms(amp.unscaled_grad(i, scale), g);
    const double ef = rel_rms(fp32.unscaled_grad(i, scale), g);
    const bool head = name.rfind("output_block.", 0) == 0;
    std::printf("[ amp      ] %-44s gradient rel rms %.2e (fp32 step %.2e)\n", name.c_str(), ea, ef);
    EXPECT_LE(ea, head ? 1e-4 : 0.06) << name;
    if (head) {
      EXPECT_GT(ef, 5 * ea) << name << ": the fp32 step's head gradient is as close to the reference";
    }
  }
  EXPECT_TRUE(amp.step.apply(ra));
}

// fp16's smallest subnormal is 2^-24 and its normal range starts at 2^-14: activation gradients of a mean loss
// over many voxels live near there, and GradScaler's scale lifts them into range. Power-of-two scales change no
// bit of the forward, and scale the backward exactly wherever the 16-bit activation gradients stay normal, so the
// unscaled gradients at scale s differ from those at 65536 only through fp16 underflow.
TEST(AmpStep, LossScaleKeepsFp16GradientsFromUnderflowing) {
  TinyBatch b;
  const int exps[] = {-9, -4, 0, 12, 16};
  std::vector<std::vector<double>> g(std::size(exps));
  for (size_t k = 0; k < std::size(exps); ++k) {
    AmpRun amp(b, DType::F16, scaler_config(true, std::ldexp(1.0f, exps[k])));
    amp.forward_backward(b);
    const ParameterSet& ps = amp.net.parameters();
    for (int i = 0; i < ps.size(); ++i) {
      const auto gi = amp.unscaled_grad(i, std::ldexp(1.0f, exps[k]));
      g[k].insert(g[k].end(), gi.begin(), gi.end());
    }
  }
  double err[std::size(exps)];
  for (size_t k = 0; k < std::size(exps); ++k) {
    int64_t diff = 0;
    for (size_t j = 0; j < g[k].size(); ++j) diff += g[k][j] != g.back()[j];
    err[k] = rel_rms(g[k], g.back());
    std::printf("[ amp      ] scale 2^%-3d vs 2^16: rel rms %.3g, %lld of %zu gradient elements differ\n", exps[k],
                err[k], static_cast<long long>(diff), g[k].size());
  }
  // Measured: 2^-9 0.23, 2^-4 4.2e-3, 2^0 3.7e-4, (2^4 2.4e-4, 2^8 2.1e-4), 2^12 8e-9 (456 elements differ). 2^-9 is
  // about the per-voxel gradient size of the bundle's 1x128^3 patch at scale 1 (2^21 voxels instead of 6144 here).
  EXPECT_GT(err[0], 0.05) << "2^-9: unscaled full-size gradients would lose this much to fp16 underflow";
  for (size_t k = 1; k + 1 < std::size(exps); ++k) EXPECT_LT(err[k], err[k - 1]) << "2^" << exps[k];
  EXPECT_LT(err[3], 1e-6) << "2^12 and 2^16 keep every activation gradient of consequence in fp16's normal range";
}

// A loss scale of 2^28 makes the scaled activation gradients overflow fp16 (max 65504) but not fp32: under autocast
// the step is skipped with the weights untouched and the scale halves until the gradients fit, then a step applies.
TEST(AmpStep, Fp16OverflowSkipsTheStepAndBacksOffTheScale) {
  TinyBatch b;
  const int e0 = 28;
  const float huge = std::ldexp(1.0f, e0);
  {
    AmpRun fp32(b, DType::F32, scaler_config(true, huge));
    TrainStepResult r = fp32.forward_backward(b);
    EXPECT_TRUE(fp32.step.apply(r)) << "2^28 overflows fp32 already: the test would not show an fp16 overflow";
  }
  AmpRun amp(b, DType::F16, scaler_config(true, huge));
  const ParameterSet& ps = amp.net.parameters();
  const std::vector<float> before(ps.values(), ps.values() + ps.numel());
  int skipped = 0;
  TrainStepResult r;
  for (; skipped < e0; ++skipped) {
    r = amp.forward_backward(b);
    EXPECT_EQ(r.loss_scale, std::ldexp(1.0f, e0 - skipped));
    if (amp.step.apply(r)) break;
    EXPECT_FALSE(grads_all_finite(ps));
    EXPECT_EQ(amp.scaler.scale(), std::ldexp(1.0f, e0 - 1 - skipped));
    EXPECT_EQ(amp.opt.step_count(), 0);
    ASSERT_EQ(0, std::memcmp(before.data(), ps.values(), ps.bytes())) << "a skipped step changed the weights";
  }
  std::printf("[ amp      ] 2^%d: %d skipped steps, first applied at scale 2^%d\n", e0, skipped, e0 - skipped);
  EXPECT_GE(skipped, 1);
  EXPECT_LT(skipped, e0);
  EXPECT_TRUE(r.applied);
  EXPECT_EQ(amp.opt.step_count(), 1);
  EXPECT_EQ(amp.scaler.skipped_steps(), skipped);
  EXPECT_NE(0, std::memcmp(before.data(), ps.values(), ps.bytes())) << "the applied step did not move the weights";
}

TEST(AmpConfig, AmpEmulateKey) {
  const TrainConfig d;
  EXPECT_TRUE(d.amp);
  EXPECT_FALSE(d.amp_emulate);
  const TrainConfig c = train_config_from_json(nlohmann::json{{"amp_emulate", true}}, "test.json");
  EXPECT_TRUE(c.amp_emulate);
  EXPECT_TRUE(train_config_to_json(c).at("amp_emulate").get<bool>());
  EXPECT_THROW(train_config_from_json(nlohmann::json{{"amp_emulate", 3}}, "test.json"), InputError);
}

// The Trainer with amp_emulate on the CPU: autocast f16 + the enabled loss scaler through whole epochs (training
// steps, the click-simulation forward, validation). Same seed as an fp32 run: finite, close, but not equal weights.
TEST(AmpTrainer, AmpEmulateTrainsOnTheCpu) {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("dex_test_amp_" + std::to_string(::getpid()));
  fs::create_directories(root);
  const std::string data = (root / "phantoms").string();
  write_phantom_dataset(data, 4, 21);
  LocalCommunicator comm;
  std::vector<float> w[2], w0;
  for (int amp = 0; amp < 2; ++amp) {
    nlohmann::json j = load_config(std::string(DEX_SOURCE_DIR) + "/configs/train_small.json");
    j["dataset_dir"] = data;
    j["output_dir"] = (root / (amp ? "amp" : "fp32")).string();
    j["spatial_size"] = {16, 16, 16};
    j["steps_per_epoch"] = 2;
    j["num_val"] = 1;
    j["max_epochs"] = 1;
    j["progress"] = false;
    j["amp_emulate"] = amp == 1;
    Trainer t(train_config_from_json(j, "amp test"), comm);
    const ParameterSet& ps = t.model().parameters();
    w0.assign(ps.values(), ps.values() + ps.numel());
    const auto rec = t.run();
    ASSERT_EQ(rec.size(), 1u);
    EXPECT_TRUE(std::isfinite(rec[0].train_loss));
    EXPECT_EQ(rec[0].steps, 2);
    w[amp].assign(ps.values(), ps.values() + ps.numel());
  }
  double moved = 0, apart = 0;
  for (size_t i = 0; i < w0.size(); ++i) {
    ASSERT_TRUE(std::isfinite(w[1][i])) << i;
    moved += (w[0][i] - w0[i]) * (w[0][i] - w0[i]);
    apart += (w[1][i] - w[0][i]) * (w[1][i] - w[0][i]);
  }
  // Adam's first steps move every weight by about lr whatever its gradient's size, so weights whose gradient is near
  // zero change direction under fp16 rounding: measured 0.34. Unrelated gradient signs would give about sqrt(2).
  const double ratio = std::sqrt(apart / moved);
  std::printf("[ amp      ] trainer: |w_amp - w_fp32| / |w_fp32 - w_init| = %.3g\n", ratio);
  EXPECT_GT(ratio, 0) << "amp_emulate changed nothing";
  EXPECT_LT(ratio, 0.6) << "the autocast run went somewhere else than the fp32 run";
  fs::remove_all(root);
}
