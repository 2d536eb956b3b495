// Shared by the CUDA benchmarks: cudaEvent timing with an L2 flush before every timed launch (STYLE.md §10),
// device random fills (never time zeros), roofline counters, and dlopen'd cuDNN / cuBLAS baselines (loaded at run
// time from LD_LIBRARY_PATH, so the binary also starts where those libraries are missing; their rows then skip).
#pragma once
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdint>
#include <functional>
#include <string>

#include "kernels/cuda/cuda_runtime.h"

namespace dex::bench {

// H100 SXM datasheet ceilings (KERNELS.md §2): dense fp16 tensor-core rate and HBM3 bandwidth.
constexpr double kPeakFlops = 989e12;
constexpr double kPeakBytes = 3.35e12;

// DEX_CUBLAS_CHECK / DEX_CUDNN_CHECK: status codes of the baseline libraries, as dex::Error.
#define DEX_CUBLAS_CHECK(expr)                                                                              \
  do {                                                                                                      \
    int dex_st_ = static_cast<int>(expr);                                                                   \
    if (dex_st_ != 0) throw ::dex::Error(::dex::str("cuBLAS call failed: ", #expr, " at ", __FILE__, ":", __LINE__, \
                                                    " in ", __func__, ": status ", dex_st_));               \
  } while (0)
#define DEX_CUDNN_CHECK(expr)                                                                               \
  do {                                                                                                      \
    int dex_st_ = static_cast<int>(expr);                                                                   \
    if (dex_st_ != 0) throw ::dex::Error(::dex::str("cuDNN call failed: ", #expr, " at ", __FILE__, ":", __LINE__, \
                                                    " in ", __func__, ": status ", dex_st_));               \
  } while (0)

// Why the CUDA benchmarks cannot run here (empty when a device is present).
inline const std::string& no_device_reason() {
  static const std::string why = [] {
    std::string w;
    return cuda_device_count(&w) > 0 ? std::string() : w;
  }();
  return why;
}

// Fills n 16-bit (f16 if !bf16, else bf16) values uniform in [-1, 1) from a counter hash; fp32 when f32.
void fill_random(void* p, int64_t n, int kind /*0 f32, 1 f16, 2 bf16*/, uint64_t seed, cudaStream_t s);

// L2-sized scratch that is overwritten before each timed launch so every iteration starts from a cold L2.
class L2Flusher {
 public:
  L2Flusher();
  void flush(cudaStream_t s);

 private:
  DeviceBuffer<uint8_t> m_buf;
};

// Times `launch` with a cudaEvent pair per iteration (L2 flushed first, outside the pair) and reports through
// SetIterationTime; then sets TFLOP/s, GB/s and the fraction of the roofline bound max(flops/peak, bytes/bw).
void time_loop(benchmark::State& state, const std::function<void(cudaStream_t)>& launch, double flops, double bytes);

// Loads `names` in order with dlopen; returns nullptr (and why) when none loads.
inline void* open_library(std::initializer_list<const char*> names, std::string* why) {
  for (const char* n : names)
    if (void* h = dlopen(n, RTLD_NOW | RTLD_GLOBAL)) return h;
  if (why) *why = str("none of the libraries could be loaded (last error: ", dlerror(), "); set LD_LIBRARY_PATH");
  return nullptr;
}

}  // namespace dex::bench
