// Definitions for bench/cuda/bench_util.h (named bench_* so the bench glob compiles it; registers no benchmark).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "bench/cuda/bench_util.h"

namespace dex::bench {

namespace {
__global__ void fill_random_kernel(void* p, int64_t n, int kind, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    // splitmix64 of (seed, i): cheap, good enough for benchmark data.
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + uint64_t(i) + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float v = float(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
    if (kind == 0) static_cast<float*>(p)[i] = v;
    else if (kind == 1) static_cast<__half*>(p)[i] = __float2half_rn(v);
    else static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  }
}
}  // namespace

void fill_random(void* p, int64_t n, int kind, uint64_t seed, cudaStream_t s) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535LL * 8);
  fill_random_kernel<<<unsigned(blocks), 256, 0, s>>>(p, n, kind, seed);
  DEX_LAUNCH_CHECK("fill_random_kernel", s);
}

L2Flusher::L2Flusher() {
  int dev = 0, l2 = 0;
  DEX_CUDA_CHECK(cudaGetDevice(&dev));
  DEX_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  m_buf = DeviceBuffer<uint8_t>(size_t(std::max(l2, 1 << 20)) * 2);
}
void L2Flusher::flush(cudaStream_t s) { DEX_CUDA_CHECK(cudaMemsetAsync(m_buf.data(), 0x5A, m_buf.bytes(), s)); }

void time_loop(benchmark::State& state, const std::function<void(cudaStream_t)>& launch, double flops, double bytes) {
  cudaStream_t s = nullptr;
  L2Flusher l2;
  cudaEvent_t e0, e1;
  DEX_CUDA_CHECK(cudaEventCreate(&e0));
  DEX_CUDA_CHECK(cudaEventCreate(&e1));
  launch(s);  // warm-up (module load, first-touch)
  DEX_CUDA_CHECK(cudaStreamSynchronize(s));
  double total = 0;
  for (auto _ : state) {
    l2.flush(s);
    DEX_CUDA_CHECK(cudaEventRecord(e0, s));
    launch(s);
    DEX_CUDA_CHECK(cudaEventRecord(e1, s));
    DEX_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    DEX_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    state.SetIterationTime(ms * 1e-3);
    total += ms * 1e-3;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  const double it = double(state.iterations());
  const double mean = it > 0 ? total / it : 0;
  state.counters["TFLOP/s"] = benchmark::Counter(mean > 0 ? flops / mean * 1e-12 : 0);
  state.counters["GB/s"] = benchmark::Counter(mean > 0 ? bytes / mean * 1e-9 : 0);
  const double floor_s = std::max(flops / kPeakFlops, bytes / kPeakBytes);
  state.counters["roofline"] = benchmark::Counter(mean > 0 ? floor_s / mean : 0);
  state.counters["us"] = benchmark::Counter(mean * 1e6);
}

}  // namespace dex::bench
