// CPU convolution benchmarks (Google Benchmark), counters in GFLOP/s (2 * MACs per second).
//
//   conv3d_{fprop,dgrad,wgrad}/{reference,gemm}/<shape>   small shapes, short min_time: runs in CI
//   conv_transpose3d_{fprop,dgrad,wgrad}/{reference,gemm}/<shape>
//   dynunet128/<layer>/gemm         the 34 DynUNet conv layers at a 128^3 patch, Gemm fprop (seconds each)
//   dynunet128_ref/<layer>/reference  the Reference on the same layer with every input extent clamped to 6,
//                                   one iteration; counter extrap_s = its time scaled by full/clamped MACs
//
// CI (small shapes only):  dex_bench_cpu --benchmark_filter='^conv' --benchmark_min_time=0.05
// DynUNet 128^3 table:     dex_bench_cpu --benchmark_filter='^dynunet128' --benchmark_repetitions=3
//                              --benchmark_out=conv.json --benchmark_out_format=json
//   (then bench/torch_cpu_conv.py --dex-json conv.json writes the comparison with PyTorch)
// Threads: OpenBLAS (OPENBLAS_NUM_THREADS) and OpenMP (OMP_NUM_THREADS) default to all cores. "Time" is wall
// time and GFLOP/s is per wall second; "CPU" is the whole process's CPU time (all threads), which is the steadier
// number on a loaded machine (with 1 thread it is the single-core cost).
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <vector>

#include "bench/dynunet_shapes.h"
#include "kernels/conv3d.h"
#include "kernels/conv_transpose3d.h"
#include "kernels/rng.h"

namespace dex {
namespace {

std::vector<float> filled(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = rng_uniform(seed, rng_stream(RngStream::Test), i) * 2.f - 1.f;
  return v;
}

enum class Pass { Fprop, Dgrad, Wgrad };
const char* pass_name(Pass p) { return p == Pass::Fprop ? "fprop" : p == Pass::Dgrad ? "dgrad" : "wgrad"; }
const char* impl_name(CpuConvImpl i) { return i == CpuConvImpl::Reference ? "reference" : "gemm"; }

void run_conv(benchmark::State& state, Conv3dParams p, Pass pass, CpuConvImpl impl) {
  const auto x = filled(p.in_elems(), 1), w = filled(p.weight_elems(), 2), dy = filled(p.out_elems(), 3);
  std::vector<float> out(size_t(pass == Pass::Fprop ? p.out_elems() : pass == Pass::Dgrad ? p.in_elems()
                                                                                          : p.weight_elems()));
  std::vector<unsigned char> ws(conv3d_cpu_workspace_bytes(p));
  for (auto _ : state) {
    if (pass == Pass::Fprop)
      conv3d_fprop_cpu(p, x.data(), w.data(), out.data(), impl, ws.data());
    else if (pass == Pass::Dgrad)
      conv3d_dgrad_cpu(p, dy.data(), w.data(), out.data(), GradMode::Overwrite, impl, ws.data());
    else
      conv3d_wgrad_cpu(p, x.data(), dy.data(), out.data(), GradMode::Overwrite, impl, ws.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(p.flops() * 1e-9 * double(state.iterations()),
                                                 benchmark::Counter::kIsRate);
  state.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
}

void run_convt(benchmark::State& state, ConvTranspose3dParams p, Pass pass, CpuConvImpl impl) {
  const auto x = filled(p.in_elems(), 1), w = filled(p.weight_elems(), 2), dy = filled(p.out_elems(), 3);
  std::vector<float> out(size_t(pass == Pass::Fprop ? p.out_elems() : pass == Pass::Dgrad ? p.in_elems()
                                                                                          : p.weight_elems()));
  for (auto _ : state) {
    if (pass == Pass::Fprop)
      conv_transpose3d_fprop_cpu(p, x.data(), w.data(), out.data(), impl);
    else if (pass == Pass::Dgrad)
      conv_transpose3d_dgrad_cpu(p, dy.data(), w.data(), out.data(), GradMode::Overwrite, impl);
    else
      conv_transpose3d_wgrad_cpu(p, x.data(), dy.data(), out.data(), GradMode::Overwrite, impl);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(p.flops() * 1e-9 * double(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}

// Reference on a clamped stand-in (Iterations(1)); extrap_s scales its time to the full layer by MACs. The
// reference skips taps that fall in the padding, so at these small extents the extrapolation runs a bit low.
void run_reference_extrapolated(benchmark::State& state, ConvLayerShape full) {
  const ConvLayerShape s = clamp_extent(full, 6);
  const int64_t in = s.transposed ? s.convt.in_elems() : s.conv.in_elems();
  const int64_t wn = s.transposed ? s.convt.weight_elems() : s.conv.weight_elems();
  const int64_t on = s.transposed ? s.convt.out_elems() : s.conv.out_elems();
  const auto x = filled(in, 1), w = filled(wn, 2);
  std::vector<float> y(static_cast<size_t>(on));
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    if (s.transposed)
      conv_transpose3d_fprop_cpu(s.convt, x.data(), w.data(), y.data(), CpuConvImpl::Reference);
    else
      conv3d_fprop_cpu(s.conv, x.data(), w.data(), y.data(), CpuConvImpl::Reference);
    benchmark::DoNotOptimize(y.data());
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double per_iter = seconds / double(state.iterations());
  state.counters["GFLOP/s"] = s.flops() * 1e-9 / per_iter;
  state.counters["extrap_s"] = per_iter * double(full.macs()) / double(s.macs());
  state.counters["clamped_GMAC"] = double(s.macs()) * 1e-9;
}

Conv3dParams small_conv(int C, int K, int S, int k, int s0, int s1, int s2) {
  return dynunet_conv(C, K, S, S, S, k, s0, s1, s2);
}

void register_all() {
  struct Small {
    const char* name;
    Conv3dParams p;
  };
  const Small small[] = {
      {"C32K32_8^3_k3s1", small_conv(32, 32, 8, 3, 1, 1, 1)},
      {"C32K64_8^3_k3s2", small_conv(32, 64, 8, 3, 2, 2, 2)},
      {"C64K64_8x8x8_k3s221", small_conv(64, 64, 8, 3, 2, 2, 1)},
      {"C32K64_8^3_k1s2", small_conv(32, 64, 8, 1, 2, 2, 2)},
      {"C3K32_12^3_k3s1", small_conv(3, 32, 12, 3, 1, 1, 1)},
      {"C32K2_12^3_k1s1", small_conv(32, 2, 12, 1, 1, 1, 1)},
  };
  for (Pass pass : {Pass::Fprop, Pass::Dgrad, Pass::Wgrad})
    for (CpuConvImpl impl : {CpuConvImpl::Reference, CpuConvImpl::Gemm})
      for (const Small& s : small) {
        const std::string name = std::string("conv3d_") + pass_name(pass) + "/" + impl_name(impl) + "/" + s.name;
        benchmark::RegisterBenchmark(name.c_str(), run_conv, s.p, pass, impl)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->MeasureProcessCPUTime();
      }
  const ConvTranspose3dParams ct[] = {dynunet_convt(64, 32, 8, 8, 8, 2, 2, 2), dynunet_convt(64, 64, 8, 8, 8, 2, 2, 1)};
  const char* ct_names[] = {"C64K32_8^3_k2s2", "C64K64_8^3_k221s221"};
  for (Pass pass : {Pass::Fprop, Pass::Dgrad, Pass::Wgrad})
    for (CpuConvImpl impl : {CpuConvImpl::Reference, CpuConvImpl::Gemm})
      for (int i = 0; i < 2; ++i) {
        const std::string name =
            std::string("conv_transpose3d_") + pass_name(pass) + "/" + impl_name(impl) + "/" + ct_names[i];
        benchmark::RegisterBenchmark(name.c_str(), run_convt, ct[i], pass, impl)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->MeasureProcessCPUTime();
      }
  // The 34 DynUNet layers at 128^3 (filtered out in CI by the '^conv' filter).
  for (const ConvLayerShape& s : dynunet_conv_shapes(128)) {
    const std::string name = "dynunet128/" + s.name + "/gemm";
    if (s.transposed)
      benchmark::RegisterBenchmark(name.c_str(), run_convt, s.convt, Pass::Fprop, CpuConvImpl::Gemm)
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.5)
          ->UseRealTime()
          ->MeasureProcessCPUTime();
    else
      benchmark::RegisterBenchmark(name.c_str(), run_conv, s.conv, Pass::Fprop, CpuConvImpl::Gemm)
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.5)
          ->UseRealTime()
          ->MeasureProcessCPUTime();
  }
  for (const ConvLayerShape& s : dynunet_conv_shapes(128)) {
    const std::string name = "dynunet128_ref/" + s.name + "/reference";
    benchmark::RegisterBenchmark(name.c_str(), run_reference_extrapolated, s)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
}

const int kRegistered = (register_all(), 0);

}  // namespace
}  // namespace dex
