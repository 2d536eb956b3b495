// Gradient buckets (train/grad_buckets.h) and the tape's backward hook they ride on: the bucket plan (reverse
// registration order, cut at the size cap), all-reduces started DURING the backward on gradients that are already
// final, every gradient reduced exactly once, the 1/world mean, and buckets nobody reported started in finish().
// A fake communicator of "2 ranks" records every launch (when, what, a copy of the data) and completes a reduction
// only in wait(), as the sum over two ranks holding the same gradient: 2 g, exact in floating point, so after the
// 1/2 scaling the result must equal the plain backward's gradient bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "autograd/ops/bias_add.h"
#include "autograd/ops/conv3d.h"
#include "autograd/ops/dice_ce.h"
#include "tests/layers/dynunet_testing.h"
#include "tests/testing.h"
#include "train/grad_buckets.h"

using namespace dex;
using namespace dex::testing;

namespace {

class FakeComm final : public Communicator {
 public:
  struct Launch {
    float* data;
    int64_t n;
    int closures_run;         // backward closures finished when the reduction started
    std::vector<float> copy;  // the data at the start
    int waits = 0;
  };
  int* closures = nullptr;  // the test's closure counter
  std::vector<Launch> launches;
  int polls = 0;

  int rank() const override { return 0; }
  int size() const override { return 2; }
  void allreduce_sum(float* d, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) d[i] *= 2;
  }
  void allreduce_sum(double* d, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) d[i] *= 2;
  }
  Request allreduce_sum_async(float* d, int64_t n) override {
    launches.push_back(Launch{d, n, closures ? *closures : -1, std::vector<float>(d, d + n)});
    return static_cast<Request>(launches.size() - 1);
  }
  void wait(Request r) override {
    Launch& l = launches.at(static_cast<size_t>(r));
    if (l.waits++ == 0) allreduce_sum(l.data, l.n);  // "the other rank" holds the same gradient: the sum is 2 g
  }
  void poll() override { ++polls; }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::string name() const override { return "fake"; }
};

// Parameters of 10, 20, 5, 40 and 3 floats (biases: the shape is all that matters here).
void declare_five(ParameterSet& ps) {
  int i = 0;
  for (int64_t n : {10, 20, 5, 40, 3}) ps.declare("p" + std::to_string(i++), {n}, ParamKind::Bias);
  ps.allocate(Device::CPU);
}

struct TinyNet {
  DynUNet net{tiny_dynunet_config()};
  Arena arena;
  Tape tape{arena};
  std::vector<float> x;
  std::vector<uint8_t> target;
  static constexpr int N = 2, D = 16, H = 16, W = 8;
  TinyNet() {
    net.init(5);
    x = random_vector(int64_t(N) * D * H * W * net.config().in_channels, 17);
    const auto t = random_ints(int64_t(N) * D * H * W, 18, 0, net.config().out_channels - 1);
    target.assign(t.begin(), t.end());
  }
  // zero_grad, forward, Dice+CE, backward; returns the number of backward closures.
  size_t forward_backward() {
    tape.clear();
    arena.reset();
    net.parameters().zero_grad();
    Tensor xin = tape.alloc(ndhwc(N, D, H, W, net.config().in_channels), false);
    std::memcpy(xin.data, x.data(), xin.bytes());
    Tensor loss = dice_ce(tape, net.forward(tape, xin), target.data());
    loss.grad[0] = 1.0f;
    tape.mark_written(loss);
    const size_t records = tape.size();
    tape.backward();
    return records;
  }
  std::vector<float> grads() const {
    const ParameterSet& p = net.parameters();
    return std::vector<float>(p.grads(), p.grads() + p.numel());
  }
};

}  // namespace

TEST(GradBuckets, PlanCutsReverseRegistrationOrderAtTheCap) {
  ParameterSet ps;
  declare_five(ps);
  // Cap 25 floats: p4 (3) + p3 (40) exceeds it -> {p4}; {p3} alone is over the cap (a bucket of its own); p2 (5) +
  // p1 (20) = 25 fits exactly; + p0 (10) does not -> {p0}.
  const auto b = plan_grad_buckets(ps, 25 * sizeof(float));
  ASSERT_EQ(b.size(), 4u);
  const int first[] = {4, 3, 1, 0}, last[] = {4, 3, 2, 0};
  const int64_t offset[] = {75, 35, 10, 0}, numel[] = {3, 40, 25, 10};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(b[i].first_param, first[i]) << "bucket " << i;
    EXPECT_EQ(b[i].last_param, last[i]) << "bucket " << i;
    EXPECT_EQ(b[i].offset, offset[i]) << "bucket " << i;
    EXPECT_EQ(b[i].numel, numel[i]) << "bucket " << i;
  }
  // A cap above the total: one bucket, the whole buffer. A cap below every parameter: one bucket each.
  const auto one = plan_grad_buckets(ps, 1 << 20);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].offset, 0);
  EXPECT_EQ(one[0].numel, ps.numel());
  EXPECT_EQ(plan_grad_buckets(ps, 1).size(), 5u);
  EXPECT_THROW(plan_grad_buckets(ps, 0), InputError);
}

TEST(GradBuckets, UnreportedBucketsStartInFinishAndEveryGradientIsAveraged) {
  ParameterSet ps;
  declare_five(ps);
  FakeComm comm;
  GradBuckets gb(ps, comm, 25 * sizeof(float));
  const std::vector<float> g = random_vector(ps.numel(), 3);
  std::memcpy(ps.grads(), g.data(), g.size() * sizeof(float));
  gb.begin();
  const float* base = ps.grads();
  gb.on_grads_final({base + ps.spec(4).offset});  // bucket 0 complete
  ASSERT_EQ(comm.launches.size(), 1u);
  gb.on_grads_final({base + ps.spec(2).offset});  // bucket 2 half done: nothing starts
  ASSERT_EQ(comm.launches.size(), 1u);
  EXPECT_THROW(gb.on_grads_final({base + ps.spec(2).offset}), Error);  // reported twice
  EXPECT_THROW(gb.on_grads_final({base + 1}), Error);                  // not the start of a parameter
  gb.finish();
  EXPECT_EQ(gb.started_in_backward(), 1);
  EXPECT_EQ(gb.started_in_finish(), 3);
  ASSERT_EQ(comm.launches.size(), 4u);
  // Started in finish in bucket order (the same on every rank); each waited once.
  EXPECT_EQ(comm.launches[1].data, base + 35);
  EXPECT_EQ(comm.launches[2].data, base + 10);
  EXPECT_EQ(comm.launches[3].data, base + 0);
  for (const auto& l : comm.launches) EXPECT_EQ(l.waits, 1);
  // 2 g / 2 == g exactly.
  for (int64_t i = 0; i < ps.numel(); ++i) ASSERT_EQ(ps.grads()[i], g[i]) << i;
  EXPECT_THROW(gb.on_grads_final({}), Error);  // a backward outside begin()/finish()
}

TEST(GradBuckets, DynUNetBucketsStartDuringTheBackwardOnFinalGradients) {
  TinyNet t;
  const size_t records = t.forward_backward();
  const std::vector<float> ref = t.grads();

  const ParameterSet& ps = t.net.parameters();
  FakeComm comm;
  int closures = 0;
  comm.closures = &closures;
  GradBuckets gb(t.net.parameters(), comm, ps.bytes() / 6);
  const size_t nb = gb.buckets().size();
  ASSERT_GE(nb, 4u) << "the cap should cut the tiny DynUNet into several buckets";
  t.tape.set_backward_hook([&](const std::vector<const float*>& g) {
    ++closures;
    gb.on_grads_final(g);
  });
  gb.begin();
  EXPECT_EQ(t.forward_backward(), records);
  EXPECT_EQ(closures, static_cast<int>(records));  // the hook ran after every closure
  EXPECT_GE(comm.polls, static_cast<int>(records));
  // Every bucket started from the hook, in bucket order (reverse registration order is DynUNet's backward order),
  // the first one well before the backward ended; none was waited for yet.
  EXPECT_EQ(gb.started_in_backward(), static_cast<int>(nb));
  ASSERT_EQ(comm.launches.size(), nb);
  for (size_t b = 0; b < nb; ++b) {
    EXPECT_EQ(comm.launches[b].data, ps.grads() + gb.buckets()[b].offset) << "bucket " << b;
    EXPECT_EQ(comm.launches[b].waits, 0);
  }
  std::fprintf(stderr, "%zu buckets started after closures:", nb);
  for (const auto& l : comm.launches) std::fprintf(stderr, " %d", l.closures_run);
  std::fprintf(stderr, " of %zu\n", records);
  EXPECT_LT(comm.launches[0].closures_run, static_cast<int>(records) / 2);
  EXPECT_LT(comm.launches[nb - 2].closures_run, static_cast<int>(records));
  for (size_t b = 1; b < nb; ++b) EXPECT_LE(comm.launches[b - 1].closures_run, comm.launches[b].closures_run);
  // What each reduction saw at its start is the final gradient (bit for bit): nothing wrote it afterwards.
  std::vector<int> covered(ref.size(), 0);
  for (const auto& l : comm.launches) {
    const int64_t off = l.data - ps.grads();
    for (int64_t i = 0; i < l.n; ++i) {
      ++covered[static_cast<size_t>(off + i)];
      ASSERT_EQ(l.copy[static_cast<size_t>(i)], ref[static_cast<size_t>(off + i)]) << "element " << off + i;
    }
  }
  for (size_t i = 0; i < covered.size(); ++i) ASSERT_EQ(covered[i], 1) << "element " << i << " reduced " << covered[i];
  gb.finish();
  EXPECT_EQ(gb.started_in_finish(), 0);
  for (const auto& l : comm.launches) EXPECT_EQ(l.waits, 1);
  const std::vector<float> mean = t.grads();
  EXPECT_EQ(std::memcmp(mean.data(), ref.data(), ref.size() * sizeof(float)), 0) << "(2 g) / 2 != g";
}

// A parameter used by two ops is final only after the earlier-recorded op's backward: the hook reports it once,
// after the last closure; a parameter used once is reported after its own op's closure.
TEST(TapeBackwardHook, ReportsAParameterOnceAfterItsLastWriter) {
  ParameterSet ps;
  ps.declare("w", {4, 4, 3, 3, 3}, ParamKind::Conv);
  ps.declare("b", {4}, ParamKind::Bias);
  ps.allocate(Device::CPU);
  const std::vector<float> w = random_vector(ps.numel(), 9);
  std::memcpy(ps.values(), w.data(), w.size() * sizeof(float));
  Arena arena;
  Tape tape(arena);
  Tensor x = tape.alloc(ndhwc(1, 5, 5, 5, 4), false);
  const std::vector<float> xv = random_vector(x.numel(), 10);
  std::memcpy(x.data, xv.data(), x.bytes());
  const int s[3] = {1, 1, 1}, p[3] = {1, 1, 1};
  Tensor y1 = conv3d(tape, x, ps.tensor(0), s, p);
  Tensor y2 = conv3d(tape, y1, ps.tensor(0), s, p);
  Tensor y3 = bias_add(tape, y2, ps.tensor(1));
  ASSERT_EQ(tape.size(), 3u);
  for (int64_t i = 0; i < y3.numel(); ++i) y3.grad[i] = 1.0f;
  tape.mark_written(y3);
  std::vector<std::vector<const float*>> calls;
  tape.set_backward_hook([&](const std::vector<const float*>& g) { calls.push_back(g); });
  tape.backward();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0], std::vector<const float*>{ps.tensor(1).grad});  // bias_add's closure: b is final
  EXPECT_TRUE(calls[1].empty());                                      // the second conv: w has one writer left
  EXPECT_EQ(calls[2], std::vector<const float*>{ps.tensor(0).grad});  // the first conv: w is final
}
