// CPU reference benchmarks for the non-convolution ops on a DynUNet-like activation: the first level's
// 32 channels at a 32^3 patch (the real 128^3 level is 64x larger; the references are single-threaded plain
// loops, so time scales linearly). Bytes/s counts every byte read and written once.
//   build/bench/dex_bench_cpu --benchmark_filter='ops/'
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "kernels/adam.h"
#include "kernels/dice_ce.h"
#include "kernels/elementwise.h"
#include "kernels/rng.h"

namespace dex {
namespace {

constexpr int kC = 32;                   // channels of the first DynUNet level
constexpr int64_t kS = 32 * 32 * 32;     // voxels of the benchmark patch
constexpr int64_t kN = kS * kC;          // elements of one activation
constexpr double kMinTime = 0.05;

std::vector<float> fill(int64_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * rng_uniform(seed, rng_stream(RngStream::Test, 99), i);
  return v;
}

void set_bytes(benchmark::State& st, double bytes_per_iter) {
  st.SetBytesProcessed(static_cast<int64_t>(bytes_per_iter * st.iterations()));
  st.counters["MB_per_iter"] = bytes_per_iter / 1e6;
}

void instance_norm_fwd(benchmark::State& st) {
  InstanceNormParams p;
  p.N = 1, p.C = kC, p.S = kS;
  auto x = fill(kN, 1);
  std::vector<float> y(kN), m(kC), r(kC);
  for (auto _ : st) {
    instance_norm_fwd_cpu(p, x.data(), nullptr, nullptr, y.data(), m.data(), r.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 4.0 * kN * 2);
}

void instance_norm_bwd(benchmark::State& st) {
  InstanceNormParams p;
  p.N = 1, p.C = kC, p.S = kS;
  auto x = fill(kN, 2), dy = fill(kN, 3);
  std::vector<float> y(kN), dx(kN), m(kC), r(kC);
  instance_norm_fwd_cpu(p, x.data(), nullptr, nullptr, y.data(), m.data(), r.data());
  for (auto _ : st) {
    instance_norm_bwd_cpu(p, x.data(), dy.data(), m.data(), r.data(), nullptr, dx.data(), nullptr, nullptr);
    benchmark::DoNotOptimize(dx.data());
  }
  set_bytes(st, 4.0 * kN * 3);
}

void leaky_relu_fwd(benchmark::State& st) {
  auto x = fill(kN, 4);
  std::vector<float> y(kN);
  for (auto _ : st) {
    leaky_relu_fwd_cpu(kN, 0.01f, x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 4.0 * kN * 2);
}

void leaky_relu_bwd(benchmark::State& st) {
  auto x = fill(kN, 5), dy = fill(kN, 6);
  std::vector<float> dx(kN);
  for (auto _ : st) {
    leaky_relu_bwd_cpu(kN, 0.01f, x.data(), dy.data(), dx.data());
    benchmark::DoNotOptimize(dx.data());
  }
  set_bytes(st, 4.0 * kN * 3);
}

void add_fwd(benchmark::State& st) {
  auto a = fill(kN, 7), b = fill(kN, 8);
  std::vector<float> y(kN);
  for (auto _ : st) {
    add_fwd_cpu(kN, a.data(), b.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 4.0 * kN * 3);
}

void add_bwd(benchmark::State& st) {
  auto dy = fill(kN, 9);
  std::vector<float> da(kN, 0.f), db(kN, 0.f);
  for (auto _ : st) {
    add_bwd_cpu(kN, dy.data(), da.data(), db.data(), GradMode::Accumulate);
    benchmark::DoNotOptimize(da.data());
  }
  set_bytes(st, 4.0 * kN * 5);
}

void bias_add_fwd(benchmark::State& st) {  // the output head: 2 channels
  auto y = fill(kS * 2, 10), bias = fill(2, 11);
  for (auto _ : st) {
    bias_add_fwd_cpu(kS, 2, bias.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 4.0 * kS * 2 * 2);
}

void bias_add_bwd(benchmark::State& st) {
  auto dy = fill(kS * 2, 12);
  std::vector<float> db(2, 0.f);
  for (auto _ : st) {
    bias_add_bwd_cpu(kS, 2, dy.data(), db.data());
    benchmark::DoNotOptimize(db.data());
  }
  set_bytes(st, 4.0 * kS * 2);
}

void concat_fwd(benchmark::State& st) {  // decoder: upsampled 32 + skip 32 channels
  auto a = fill(kN, 13), b = fill(kN, 14);
  std::vector<float> y(2 * kN);
  for (auto _ : st) {
    concat_fwd_cpu(kS, kC, kC, a.data(), b.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 4.0 * kN * 4);
}

void concat_bwd(benchmark::State& st) {
  auto dy = fill(2 * kN, 15);
  std::vector<float> da(kN), db(kN);
  for (auto _ : st) {
    concat_bwd_cpu(kS, kC, kC, dy.data(), da.data(), db.data());
    benchmark::DoNotOptimize(da.data());
  }
  set_bytes(st, 4.0 * kN * 4);
}

void softmax_fwd(benchmark::State& st) {  // over the 2 output channels
  auto x = fill(kS * 2, 16, -4.f, 4.f);
  std::vector<float> y(kS * 2);
  for (auto _ : st) {
    softmax_fwd_cpu(kS, 2, x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 4.0 * kS * 2 * 2);
}

void softmax_bwd(benchmark::State& st) {
  auto y = fill(kS * 2, 17, 0.f, 1.f), dy = fill(kS * 2, 18);
  std::vector<float> dx(kS * 2);
  for (auto _ : st) {
    softmax_bwd_cpu(kS, 2, y.data(), dy.data(), dx.data());
    benchmark::DoNotOptimize(dx.data());
  }
  set_bytes(st, 4.0 * kS * 2 * 3);
}

void argmax(benchmark::State& st) {
  auto x = fill(kS * 2, 19);
  std::vector<uint8_t> out(kS);
  for (auto _ : st) {
    argmax_cpu(kS, 2, x.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  set_bytes(st, 4.0 * kS * 2 + kS);
}

void dice_ce_fwd_bwd(benchmark::State& st) {
  DiceCEParams p;
  p.N = 1, p.C = 2, p.S = kS;
  auto z = fill(kS * 2, 20, -3.f, 3.f);
  std::vector<uint8_t> t(kS);
  for (int64_t s = 0; s < kS; ++s) t[s] = static_cast<uint8_t>(rng_u32(21, 0, s) & 1u);
  std::vector<float> dz(kS * 2);
  for (auto _ : st) {
    DiceCEResult r = dice_ce_fwd_bwd_cpu(p, z.data(), t.data(), dz.data());
    benchmark::DoNotOptimize(r);
  }
  set_bytes(st, 4.0 * kS * 2 * 3 + 2.0 * kS);  // logits read twice, target twice, dlogits written
}

void adam_step(benchmark::State& st) {  // 1M parameters (the full DynUNet has about 4.6M)
  const int64_t n = 1 << 20;
  auto p = fill(n, 22), g = fill(n, 23, -1e-3f, 1e-3f);
  std::vector<float> m(n, 0.f), v(n, 0.f);
  AdamParams a;
  int64_t t = 0;
  for (auto _ : st) {
    adam_step_cpu(a, ++t, n, p.data(), g.data(), m.data(), v.data());
    benchmark::DoNotOptimize(p.data());
  }
  set_bytes(st, 4.0 * n * 7);  // read p, g, m, v; write p, m, v
}

void convert_f32_to_f16(benchmark::State& st) {
  auto x = fill(kN, 24, -100.f, 100.f);
  std::vector<uint16_t> h(kN);
  for (auto _ : st) {
    convert_f32_to_f16_cpu(kN, x.data(), h.data());
    benchmark::DoNotOptimize(h.data());
  }
  set_bytes(st, 6.0 * kN);
}

void convert_f16_to_f32(benchmark::State& st) {
  auto x = fill(kN, 25, -100.f, 100.f);
  std::vector<uint16_t> h(kN);
  convert_f32_to_f16_cpu(kN, x.data(), h.data());
  for (auto _ : st) {
    convert_f16_to_f32_cpu(kN, h.data(), x.data());
    benchmark::DoNotOptimize(x.data());
  }
  set_bytes(st, 6.0 * kN);
}

void convert_f32_to_bf16(benchmark::State& st) {
  auto x = fill(kN, 26, -100.f, 100.f);
  std::vector<uint16_t> h(kN);
  for (auto _ : st) {
    convert_f32_to_bf16_cpu(kN, x.data(), h.data());
    benchmark::DoNotOptimize(h.data());
  }
  set_bytes(st, 6.0 * kN);
}

#define DEX_OPS_BENCH(fn) BENCHMARK(fn)->Name("ops/" #fn "/cpu")->MinTime(kMinTime)->Unit(benchmark::kMicrosecond)
DEX_OPS_BENCH(instance_norm_fwd);
DEX_OPS_BENCH(instance_norm_bwd);
DEX_OPS_BENCH(leaky_relu_fwd);
DEX_OPS_BENCH(leaky_relu_bwd);
DEX_OPS_BENCH(add_fwd);
DEX_OPS_BENCH(add_bwd);
DEX_OPS_BENCH(bias_add_fwd);
DEX_OPS_BENCH(bias_add_bwd);
DEX_OPS_BENCH(concat_fwd);
DEX_OPS_BENCH(concat_bwd);
DEX_OPS_BENCH(softmax_fwd);
DEX_OPS_BENCH(softmax_bwd);
DEX_OPS_BENCH(argmax);
DEX_OPS_BENCH(dice_ce_fwd_bwd);
DEX_OPS_BENCH(adam_step);
DEX_OPS_BENCH(convert_f32_to_f16);
DEX_OPS_BENCH(convert_f16_to_f32);
DEX_OPS_BENCH(convert_f32_to_bf16);

}  // namespace
}  // namespace dex
