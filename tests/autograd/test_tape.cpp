// Tape rules: no-grad mode records nothing and allocates no gradients; parameter gradients accumulate across
// backwards; activation gradients are overwritten by their first writer even when the buffer held garbage.
#include "autograd/ops/add.h"
#include "autograd/ops/conv3d.h"
#include "autograd/ops/leaky_relu.h"
#include "autograd/tape.h"
#include "tests/testing.h"

using namespace dex;
using namespace dex::testing;

namespace {
struct TinyGraph {
  Arena arena;
  Tape tape{arena};
  Tensor x, w;
  std::vector<float> wdata, wgrad;  // parameters live outside the step arena
  TinyGraph() {
    x = tape.alloc(ndhwc(1, 3, 2, 2, 2), true);
    auto xv = random_vector(x.numel(), 1);
    std::copy(xv.begin(), xv.end(), x.data);
    w = Tensor({2, 3, 3, 3, 2}, Layout::Weight);
    wdata.assign(w.numel(), 0.f);
    w.data = wdata.data();
    wgrad.assign(w.numel(), 0.f);
    w.grad = wgrad.data();
    auto wv = random_vector(w.numel(), 2);
    std::copy(wv.begin(), wv.end(), w.data);
  }
  Tensor forward() {
    static const int s[3] = {1, 1, 1}, p[3] = {1, 1, 1};
    return leaky_relu(tape, add(tape, conv3d(tape, x, w, s, p), x), 0.01f);
  }
  void backward(Tensor y) {
    for (int64_t i = 0; i < y.numel(); ++i) y.grad[i] = 1.0f;
    tape.mark_written(y);
    tape.backward();
  }
};
}  // namespace

TEST(Tape, NoGradRecordsNothing) {
  TinyGraph s;
  {
    NoGradGuard ng(s.tape);
    Tensor y = s.forward();
    EXPECT_EQ(s.tape.size(), 0u);
    EXPECT_EQ(y.grad, nullptr);
  }
  EXPECT_TRUE(s.tape.grad_enabled());
  Tensor y = s.forward();
  EXPECT_EQ(s.tape.size(), 3u);  // conv3d, add, leaky_relu
  EXPECT_NE(y.grad, nullptr);
}

TEST(Tape, ParameterGradientsAccumulateActivationGradientsOverwrite) {
  TinyGraph s;
  s.backward(s.forward());
  std::vector<float> g1 = s.wgrad;
  std::vector<float> dx1(s.x.grad, s.x.grad + s.x.numel());
  double norm = 0;
  for (float v : g1) norm += std::fabs(v);
  ASSERT_GT(norm, 0);
  // Second pass on a fresh tape whose activation gradient buffers are poisoned: x.grad must come out equal
  // (overwritten, then accumulated across its two uses), w.grad must double exactly (g + g).
  s.tape.clear();
  s.arena.reset();
  Tensor x2 = s.tape.alloc(s.x, true);
  std::copy(s.x.data, s.x.data + s.x.numel(), x2.data);  // same buffer after reset: unchanged values
  for (int64_t i = 0; i < x2.numel(); ++i) x2.grad[i] = NAN;
  s.x = x2;
  s.backward(s.forward());
  for (size_t i = 0; i < g1.size(); ++i) ASSERT_EQ(s.wgrad[i], 2 * g1[i]) << "w.grad[" << i << "]";
  for (int64_t i = 0; i < s.x.numel(); ++i) ASSERT_EQ(s.x.grad[i], dx1[i]) << "x.grad[" << i << "]";
}

TEST(Tape, BackwardSkipsBranchesWithoutGradient) {
  TinyGraph s;
  Tensor y = s.forward();
  // Never seeded: backward must leave the parameter gradients untouched.
  s.tape.backward();
  for (float v : s.wgrad) ASSERT_EQ(v, 0.f);
  (void)y;
}
