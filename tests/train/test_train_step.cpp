// One training step against PyTorch (Dice+CE, backward, torch.optim.Adam lr 1e-4: the weights after the update),
// the dynamic loss scaler (GradScaler defaults; an injected inf skips the step and backs off the scale; a
// power-of-two scale changes no bit of an fp32 step), and determinism: 10 steps twice, once with a save and
// resume at step 5, give bitwise-equal losses and weights.
#include <cmath>
#include <cstdio>
#include <limits>

#include "kernels/rng.h"
#include "tests/layers/dynunet_testing.h"
#include "train/train_step.h"
#include "train/training_state.h"
#include "layers/safetensors.h"

using namespace dex;
using namespace dex::testing;

namespace {

struct Trainer {
  DynUNet net;
  AdamOptimizer opt;
  LossScaler scaler;
  Arena arena;
  TrainStep step;
  explicit Trainer(const LossScalerConfig& sc = LossScalerConfig())
      : net(tiny_dynunet_config()), opt(net.parameters()), scaler(sc), step(net, opt, scaler, arena) {}
};

}  // namespace

TEST(TrainStep, OneAdamStepMatchesTorch) {
  TinyBatch b;
  Trainer t;
  t.net.load_state_dict(fixture_state_dict(b.fx, "w."));
  TrainStepResult r = t.step.run(b.x.data(), b.target.data(), b.N, {b.D, b.H, b.W});
  ASSERT_TRUE(r.applied);
  EXPECT_EQ(t.opt.step_count(), 1);
  const double ref_loss = b.fx.at("loss").data[0];
  EXPECT_NEAR(r.loss.loss, ref_loss, 7e-5 * ref_loss);  // kNetRtol of test_dynunet_parity.cpp
  // After one step Adam moves each weight by lr * g / (|g| + eps) (bias corrections cancel at t = 1). With the
  // gradient known to within dg = 7e-5 * rms(g_ref) + |g_ref| * 7e-5 (the parity bound), the update is known to
  // within lr * dg * eps / (max(|g| - dg, 0) + eps)^2 (the derivative of g / (|g| + eps)), capped at 2 lr where
  // the sign itself is uncertain; plus the rounding of w - update: 2 ulp of |w|.
  const ParameterSet& ps = t.net.parameters();
  const double lr = t.opt.hyper().lr, eps = t.opt.hyper().eps;
  for (int i = 0; i < ps.size(); ++i) {
    const std::string& name = ps.spec(i).name;
    std::vector<float> got = ps.get_torch(i);
    const auto& ref = b.fx.at("a." + name).data;
    const auto& g = b.fx.at("g." + name).data;
    const double grms = rms(g);
    double worst = 0;
    int64_t worst_j = 0;
    for (size_t j = 0; j < ref.size(); ++j) {
      const double dg = 7e-5 * (grms + std::fabs(g[j]));
      const double lo = std::max(std::fabs(g[j]) - dg, 0.0);
      const double bound = std::min(2 * lr, lr * dg * eps / ((lo + eps) * (lo + eps))) +
                           2 * std::ldexp(1.0, std::ilogb(std::fabs(ref[j]) + 1e-30) - 23);
      const double ratio = std::fabs(got[j] - ref[j]) / bound;
      if (ratio > worst) { worst = ratio; worst_j = int64_t(j); }
    }
    std::printf("[ adam     ] %-48s worst %6.2f%% of bound\n", name.c_str(), 100 * worst);
    EXPECT_LE(worst, 1.0) << name << "[" << worst_j << "]: got " << got[worst_j] << ", torch " << ref[worst_j];
    // and the weights did move
    EXPECT_NE(got[0], float(b.fx.at("w." + name).data[0])) << name;
  }
}

TEST(LossScaler, GradScalerDefaultsGrowAndBackOff) {
  LossScaler off;
  EXPECT_EQ(off.scale(), 1.0f);
  LossScalerConfig cfg;
  cfg.enabled = true;
  EXPECT_EQ(LossScaler(cfg).scale(), 65536.0f);
  EXPECT_EQ(cfg.growth_interval, 2000);
  cfg.growth_interval = 3;
  LossScaler s(cfg);
  EXPECT_TRUE(s.update(false));
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.scale(), 65536.0f);
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.scale(), 131072.0f);  // x2 after growth_interval clean steps
  EXPECT_TRUE(s.update(false));
  EXPECT_FALSE(s.update(true));     // overflow: skip, x0.5, and the clean-step count restarts
  EXPECT_EQ(s.scale(), 65536.0f);
  EXPECT_EQ(s.growth_tracker(), 0);
  EXPECT_EQ(s.skipped_steps(), 1);
  EXPECT_FALSE(off.update(true));   // disabled: still refuses to apply non-finite gradients
  EXPECT_EQ(off.scale(), 1.0f);
}

TEST(TrainStep, InjectedInfSkipsTheStepAndBacksOffTheScale) {
  TinyBatch b;
  LossScalerConfig cfg;
  cfg.enabled = true;
  Trainer t(cfg);
  t.net.init(42);
  const ParameterSet& ps = t.net.parameters();
  std::vector<float> before(ps.values(), ps.values() + ps.numel());
  TrainStepResult r = t.step.forward_backward(b.x.data(), b.target.data(), b.N, {b.D, b.H, b.W});
  EXPECT_EQ(r.loss_scale, 65536.0f);
  EXPECT_TRUE(grads_all_finite(ps));
  ps.grads()[ps.numel() / 3] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(grads_all_finite(ps));
  EXPECT_FALSE(t.step.apply(r));
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(t.scaler.scale(), 32768.0f);
  EXPECT_EQ(t.opt.step_count(), 0);
  EXPECT_EQ(0, std::memcmp(before.data(), ps.values(), ps.bytes())) << "a skipped step changed the weights";
  // A NaN is caught the same way.
  r = t.step.forward_backward(b.x.data(), b.target.data(), b.N, {b.D, b.H, b.W});
  ps.grads()[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(t.step.apply(r));
  EXPECT_EQ(t.scaler.scale(), 16384.0f);
  // The next clean step applies, with the gradients unscaled by 1/16384.
  r = t.step.run(b.x.data(), b.target.data(), b.N, {b.D, b.H, b.W});
  EXPECT_TRUE(r.applied);
  EXPECT_EQ(r.loss_scale, 16384.0f);
  EXPECT_EQ(t.opt.step_count(), 1);
  EXPECT_EQ(t.scaler.growth_tracker(), 1);
}

TEST(TrainStep, PowerOfTwoLossScaleChangesNoBitInFp32) {
  TinyBatch b;
  LossScalerConfig on;
  on.enabled = true;
  Trainer plain, scaled(on);
  plain.net.init(8);
  scaled.net.init(8);
  for (int s = 0; s < 2; ++s) {
    TrainStepResult a = plain.step.run(b.x.data(), b.target.data(), b.N, {b.D, b.H, b.W});
    TrainStepResult c = scaled.step.run(b.x.data(), b.target.data(), b.N, {b.D, b.H, b.W});
    EXPECT_EQ(a.loss.loss, c.loss.loss);
  }
  const ParameterSet &p = plain.net.parameters(), &q = scaled.net.parameters();
  EXPECT_EQ(0, std::memcmp(p.values(), q.values(), p.bytes()));
}

namespace {
// A synthetic batch for step `step`, from the trainer's sequential RNG (so the RNG state must resume too).
void make_batch(Rng& rng, std::vector<float>& x, std::vector<uint8_t>& target) {
  for (float& v : x) v = static_cast<float>(rng.uniform() * 2 - 1);
  for (uint8_t& t : target) t = rng.uniform() < 0.3 ? 1 : 0;
}

std::vector<double> run_steps(Trainer& t, TrainingCounters& c, int until, const Int3& sp) {
  std::vector<double> losses;
  std::vector<float> x(size_t(sp[0]) * sp[1] * sp[2] * 3);
  std::vector<uint8_t> target(size_t(sp[0]) * sp[1] * sp[2]);
  while (c.step < until) {
    make_batch(c.rng, x, target);
    losses.push_back(t.step.run(x.data(), target.data(), 1, sp).loss.loss);
    ++c.step;
  }
  return losses;
}
}  // namespace

TEST(TrainStep, TenStepsWithSaveAndResumeAreBitwiseEqual) {
  const Int3 sp{16, 8, 8};  // the smallest extents the tiny net takes (total stride 8x8x4), times 2 on D
  AdamParams hyper;
  hyper.lr = 1e-3f;  // larger than the bundle's, so ten steps move the weights visibly
  // Run A: ten steps straight.
  Trainer a;
  a.net.init(2026);
  a.opt.set_lr(hyper.lr);
  TrainingCounters ca;
  ca.rng = Rng(99, rng_stream(RngStream::DataOrder));
  std::vector<double> la = run_steps(a, ca, 10, sp);

  // Run B: five steps, save, a fresh process-like restart, load, five more.
  const std::string path = std::string(DEX_BINARY_DIR) + "/test_train_state.safetensors";
  std::vector<double> lb;
  {
    Trainer b;
    b.net.init(2026);
    b.opt.set_lr(hyper.lr);
    TrainingCounters cb;
    cb.rng = Rng(99, rng_stream(RngStream::DataOrder));
    lb = run_steps(b, cb, 5, sp);
    save_training_state(path, b.net, b.opt, b.scaler, cb);
  }
  Trainer r;
  r.net.init(7);  // different weights: the load must replace them all
  r.opt.set_lr(hyper.lr);
  TrainingCounters cr;
  load_training_state(path, r.net, r.opt, r.scaler, cr);
  EXPECT_EQ(cr.step, 5);
  EXPECT_EQ(r.opt.step_count(), 5);
  std::vector<double> rest = run_steps(r, cr, 10, sp);
  lb.insert(lb.end(), rest.begin(), rest.end());

  ASSERT_EQ(la.size(), 10u);
  ASSERT_EQ(lb.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(la[i], lb[i]) << "loss at step " << i;
  EXPECT_NE(la[0], la[9]);
  const ParameterSet &p = a.net.parameters(), &q = r.net.parameters();
  EXPECT_EQ(0, std::memcmp(p.values(), q.values(), p.bytes())) << "weights differ after resume";
  auto ma = a.opt.exp_avg(), mr = r.opt.exp_avg();
  EXPECT_EQ(0, std::memcmp(ma.data(), mr.data(), ma.size() * 4)) << "Adam moments differ after resume";
  std::remove(path.c_str());
}

TEST(TrainingState, BadFilesAreInputErrors) {
  Trainer t;
  TrainingCounters c;
  EXPECT_THROW(load_training_state("/nonexistent/state.safetensors", t.net, t.opt, t.scaler, c), InputError);
  // A model file (weights only) is not a training state: the error says so.
  const std::string path = std::string(DEX_BINARY_DIR) + "/test_not_a_state.safetensors";
  save_safetensors(path, t.net.state_dict());
  try {
    load_training_state(path, t.net, t.opt, t.scaler, c);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not a dex training state"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}
