// conv3d fprop v3 (wgmma, kernels/cuda/conv3d_wgmma.cu) on the real DynUNet layer shapes (bench/dynunet_shapes.h) at
// 128^3 and 64^3, batch 1, f16 and bf16: every 3x3x3 / 1x1x1 layer v3 supports (C and K multiples of 32).
// Names: conv3d_fprop/{f16,bf16}_wgmma/<patch>/<layer>, next to bench_conv3d.cu's conv3d_fprop/f16_v2 and
// conv3d_fprop/cudnn_f16 rows on the same shapes and buffers' sizes, so one run compares v2, v3 and cuDNN:
//   dex_bench_cuda --benchmark_filter='^conv3d_fprop/(f16_v2|f16_wgmma|bf16_wgmma|cudnn_f16)/'
// Counters as in bench_conv3d.cu (bench_util.h): us, TFLOP/s, GB/s, roofline fraction; L2 flushed before each launch.
#include <cuda_runtime.h>

#include <string>

#include "bench/cuda/bench_util.h"
#include "bench/dynunet_shapes.h"
#include "kernels/cuda/conv3d_wgmma.h"

namespace dex::bench {
namespace {

constexpr uint64_t kSeed = 2026;  // same fills as bench_conv3d.cu

void bm_wgmma(benchmark::State& state, Conv3dParams p, DType t) {
  if (!no_device_reason().empty()) {
    state.SkipWithError(("no CUDA device: " + no_device_reason()).c_str());
    return;
  }
  try {
    const int kind = t == DType::BF16 ? 2 : 1;
    DeviceBuffer<uint16_t> x(size_t(p.in_elems())), w(size_t(p.weight_elems())), y(size_t(p.out_elems()));
    fill_random(x.data(), p.in_elems(), kind, kSeed, nullptr);
    fill_random(w.data(), p.weight_elems(), kind, kSeed + 1, nullptr);
    DEX_CUDA_CHECK(cudaDeviceSynchronize());
    time_loop(
        state, [&](cudaStream_t s) { conv3d_fprop_wgmma(p, t, x.data(), w.data(), y.data(), s); }, p.flops(),
        p.bytes(2));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

int register_wgmma() {
  for (int patch : {128, 64})
    for (const ConvLayerShape& l : dynunet_conv_shapes(patch)) {
      if (l.transposed) continue;
      const Conv3dParams p = l.conv;
      if (!conv3d_fprop_wgmma_supports(p, DType::F16)) continue;
      const std::string tail = str("/", patch, "/", l.name);
      for (DType t : {DType::F16, DType::BF16})
        benchmark::RegisterBenchmark(
            (std::string("conv3d_fprop/") + (t == DType::BF16 ? "bf16" : "f16") + "_wgmma" + tail).c_str(),
            [p, t](benchmark::State& s) { bm_wgmma(s, p, t); })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
    }
  return 0;
}
[[maybe_unused]] const int registered = register_wgmma();

}  // namespace
}  // namespace dex::bench
