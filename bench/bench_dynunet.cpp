// The whole DynUNet on the CPU backend (Gemm convolutions), Google Benchmark:
//
//   dynunet/forward/<P>      one no-grad forward of the bundle's network at 1x3xP^3 (inference)
//   dynunet/train_step/<P>   one training step: forward with the tape, Dice+CE, backward, Adam (fp32)
//
// P = 32 runs in seconds (CI); P = 128 is the bundle's patch (minutes on 2 cores; the step needs ~12.4 GiB, so
// P = 96, 5.2 GiB, is there for machines that cannot hold it: time and memory scale with P^3):
//   dex_bench_cpu --benchmark_filter='^dynunet/.*/128' --benchmark_repetitions=3
// next to PyTorch:  /usr/bin/python3 bench/torch_cpu_dynunet.py --threads 2 --repeats 3
// Counters: arena_GiB = the step arena's peak (activations, saved context, gradients, scratch); params_GiB =
// the long-lived buffers (weights + gradients, + Adam's two moments for the step); GFLOP/s per wall second
// (forward: 2 * 482.41 GMAC at 128^3, scaled by (P/128)^3; a step counts 3x the forward). "CPU" is the whole
// process's CPU time (all threads), the steadier number on a shared machine.
#include <benchmark/benchmark.h>

#include "autograd/tape.h"
#include "kernels/rng.h"
#include "layers/dynunet.h"
#include "autograd/ops/dice_ce.h"
#include "kernels/backend.h"

namespace dex {
namespace {

constexpr double kForwardGmac128 = 482.41;

std::vector<float> input(int P) {
  std::vector<float> x(size_t(P) * P * P * 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = rng_uniform(1, rng_stream(RngStream::Test), i) * 2.f - 1.f;
  return x;
}

double forward_flops(int P) { return 2e9 * kForwardGmac128 * (double(P) / 128) * (double(P) / 128) * (double(P) / 128); }

void BM_dynunet_forward(benchmark::State& state) {
  const int P = static_cast<int>(state.range(0));
  DynUNet net;
  net.init(1);
  std::vector<float> x = input(P);
  Arena arena;
  Tape tape(arena);
  for (auto _ : state) {
    arena.reset();
    NoGradGuard ng(tape);
    Tensor xin = tape.alloc(ndhwc(1, P, P, P, 3), false);
    std::copy(x.begin(), x.end(), xin.data);
    Tensor y = net.forward(tape, xin);
    benchmark::DoNotOptimize(y.data[0]);
  }
  state.counters["arena_GiB"] = arena.peak() / double(1 << 30);
  state.counters["params_GiB"] = 2 * net.parameters().bytes() / double(1 << 30);
  state.counters["GFLOP/s"] = benchmark::Counter(forward_flops(P) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

// The step of train/train_step.cpp (dex_bench_cpu does not link dex_train): zero_grad, forward with the tape,
// Dice+CE, backward, one Adam update over the contiguous parameter buffer.
void BM_dynunet_train_step(benchmark::State& state) {
  const int P = static_cast<int>(state.range(0));
  DynUNet net;
  net.init(1);
  ParameterSet& ps = net.parameters();
  const Backend& be = backend(Device::CPU);
  std::vector<float> m(size_t(ps.numel()), 0.f), v(size_t(ps.numel()), 0.f);
  std::vector<float> x = input(P);
  std::vector<uint8_t> target(size_t(P) * P * P);
  for (size_t i = 0; i < target.size(); ++i) target[i] = (i / 7) % 5 == 0;
  Arena arena;
  Tape tape(arena);
  int64_t t = 0;
  for (auto _ : state) {
    tape.clear();
    arena.reset();
    ps.zero_grad();
    Tensor xin = tape.alloc(ndhwc(1, P, P, P, 3), false);
    std::copy(x.begin(), x.end(), xin.data);
    Tensor loss = dice_ce(tape, net.forward(tape, xin), target.data());
    loss.grad[0] = 1.0f;
    tape.mark_written(loss);
    tape.backward();
    be.adam_step(AdamParams(), ++t, ps.numel(), ps.values(), ps.grads(), m.data(), v.data(), 1.0f, nullptr);
    benchmark::DoNotOptimize(ps.values()[0]);
  }
  state.counters["arena_GiB"] = arena.peak() / double(1 << 30);
  state.counters["params_GiB"] = 4 * ps.bytes() / double(1 << 30);
  state.counters["GFLOP/s"] =
      benchmark::Counter(3 * forward_flops(P) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_dynunet_forward)->Name("dynunet/forward")->Arg(32)->Arg(128)->Iterations(1)->Unit(benchmark::kSecond)
    ->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_dynunet_train_step)->Name("dynunet/train_step")->Arg(32)->Arg(96)->Arg(128)->Iterations(1)
    ->Unit(benchmark::kSecond)->UseRealTime()->MeasureProcessCPUTime();

}  // namespace
}  // namespace dex
