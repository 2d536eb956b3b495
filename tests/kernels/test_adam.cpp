// Adam: parity with torch.optim.Adam (float64, foreach=False) over several steps, with default and non-default
// hyperparameters (weight decay); grad_scale; the first-step analytic size; bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/adam.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

using testing::kUnitF32;

class AdamParity : public ::testing::TestWithParam<const char*> {};

AdamParams hyper(const testing::FixtureTensor& h) {
  AdamParams a;
  a.lr = static_cast<float>(h.data[0]), a.beta1 = static_cast<float>(h.data[1]);
  a.beta2 = static_cast<float>(h.data[2]), a.eps = static_cast<float>(h.data[3]);
  a.weight_decay = static_cast<float>(h.data[4]);
  return a;
}

TEST_P(AdamParity, adam_steps_match_pytorch) {
  const std::string k = GetParam();
  auto fx = testing::load_fixture(testing::test_data("ops/adam.bin"));
  const AdamParams a = hyper(fx.at(k + ".hyper"));
  std::vector<float> param = fx.at(k + ".param0").f32(), grads = fx.at(k + ".grads").f32();
  const int64_t n = static_cast<int64_t>(param.size()), steps = static_cast<int64_t>(grads.size()) / n;
  std::vector<float> m(n, 0.f), v(n, 0.f);
  const float p00 = param[0];
  for (int64_t t = 1; t <= steps; ++t) {
    adam_step_cpu(a, t, n, param.data(), grads.data() + (t - 1) * n, m.data(), v.data());
    // Each step rounds param, m and v to fp32 once (the update itself is in double): errors grow by about
    // u per step, plus u of the stored m in the next step. rtol = 4u*t, atol = rtol*rms(ref).
    const double rtol = 4 * kUnitF32 * t;
    for (auto [name, got] : {std::pair{"param", &param}, {"m", &m}, {"v", &v}}) {
      std::vector<double> ref(fx.at(k + "." + name).data.begin() + (t - 1) * n,
                              fx.at(k + "." + name).data.begin() + t * n);
      SCOPED_TRACE(dex::str(k, " step ", t, " ", name));
      if (t == steps)
        testing::check_close(dex::str("adam ", k, " ", name, " after ", t, " steps"), got->data(), ref.data(), n,
                             rtol, rtol * testing::rms(ref), 4 * rtol * rtol);
      else
        EXPECT_TRUE(testing::compare(got->data(), ref.data(), n, rtol, rtol * testing::rms(ref), 4 * rtol * rtol).ok);
    }
  }
  // element 0 always had a zero gradient: with no weight decay it never moves (eps keeps 0/0 away)
  if (a.weight_decay == 0.f) {
    EXPECT_EQ(param[0], p00);
  }
}
INSTANTIATE_TEST_SUITE_P(ops, AdamParity, ::testing::Values("default", "wd"));

// grad_scale unscales AMP gradients: grads * 2^10 with grad_scale 2^-10 gives bit-identical steps.
TEST(adam, grad_scale_unscales_exactly) {
  const int64_t n = 20;
  AdamParams a;
  std::vector<float> g = testing::random_vector(n, 101), g_scaled(n);
  for (int64_t i = 0; i < n; ++i) g_scaled[i] = g[i] * 1024.f;
  std::vector<float> p1 = testing::random_vector(n, 102), p2 = p1, m1(n, 0.f), v1(n, 0.f), m2 = m1, v2 = v1;
  for (int t = 1; t <= 3; ++t) {
    adam_step_cpu(a, t, n, p1.data(), g.data(), m1.data(), v1.data());
    adam_step_cpu(a, t, n, p2.data(), g_scaled.data(), m2.data(), v2.data(), 1.f / 1024.f);
  }
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(m1, m2);
  EXPECT_EQ(v1, v2);
}

// Step 1 from zero moments: m_hat = g, v_hat = g^2, so the update is lr * g/(|g| + eps) ~ lr * sign(g).
TEST(adam, first_step_moves_each_parameter_by_lr) {
  AdamParams a;
  a.lr = 1e-3f;
  const int64_t n = 16;
  std::vector<float> p(n, 1.f), g = testing::random_vector(n, 103, -1.f, 1.f), m(n, 0.f), v(n, 0.f);
  adam_step_cpu(a, 1, n, p.data(), g.data(), m.data(), v.data());
  for (int64_t i = 0; i < n; ++i) {
    const double expect = 1.0 - 1e-3 * g[i] / (std::fabs(g[i]) + 1e-8);
    EXPECT_NEAR(p[i], expect, kUnitF32) << i;
  }
}

TEST(adam, bad_input_throws) {
  AdamParams a;
  float p = 0, g = 0, m = 0, v = 0;
  EXPECT_THROW(adam_step_cpu(a, 0, 1, &p, &g, &m, &v), Error);  // steps are 1-based
  EXPECT_THROW(adam_step_cpu(a, 1, -1, &p, &g, &m, &v), Error);
  EXPECT_THROW(adam_step_cpu(a, 1, 1, &p, nullptr, &m, &v), Error);
  AdamParams bad = a;
  bad.beta2 = 1.0f;
  EXPECT_THROW(adam_step_cpu(bad, 1, 1, &p, &g, &m, &v), Error);
  bad = a, bad.lr = -1.f;
  EXPECT_THROW(adam_step_cpu(bad, 1, 1, &p, &g, &m, &v), Error);
}

}  // namespace
}  // namespace dex
