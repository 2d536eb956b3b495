#include "kernels/cuda/cuda_runtime.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

namespace dex {
namespace detail {
void throw_cuda(const char* expr, const char* file, int line, const char* func, cudaError_t err) {
  throw CudaError(str("CUDA call failed: ", expr, " at ", file, ":", line, " in ", func, ": ",
                      cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
}
}  // namespace detail

bool sync_check_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("DEX_SYNC_CHECK");
#ifndef NDEBUG
    if (!v) return true;  // Debug builds check every launch unless told otherwise
#endif
    return v && std::strcmp(v, "0") != 0 && v[0] != '\0';
  }();
  return on;
}

void launch_check(const char* kernel, cudaStream_t stream, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync_check_enabled()) err = cudaStreamSynchronize(stream);
  if (err != cudaSuccess)
    throw CudaError(str("CUDA kernel ", kernel, " failed (launched at ", file, ":", line, "): ",
                        cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
}

namespace {
class CudaAllocator final : public BlockAllocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) bytes = kArenaAlign;
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, align_up(bytes));
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky-free error state of a failed allocation
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw CudaError(str("cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorString(err), " (device free ",
                          free_b >> 20, " of ", total_b >> 20, " MiB; dex holds ", memory_summary(), ")"));
    }
    memory_counters().add(Device::CUDA, static_cast<int64_t>(bytes));
    return p;
  }
  void release(void* p, size_t bytes) noexcept override {
    cudaError_t err = cudaFree(p);
    if (err != cudaSuccess) {
      // Destructors never throw (STYLE.md §4): log instead.
      std::fprintf(stderr, "dex: cudaFree failed: %s\n", cudaGetErrorString(err));
    }
    memory_counters().add(Device::CUDA, -static_cast<int64_t>(bytes == 0 ? kArenaAlign : bytes));
  }
  Device device() const override { return Device::CUDA; }
};
}  // namespace

BlockAllocator& cuda_allocator() {
  static CudaAllocator a;
  return a;
}

int cuda_device_count(std::string* why_not) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    if (why_not) *why_not = str("no usable CUDA device: cudaGetDeviceCount says ", cudaGetErrorName(err), " (",
                                cudaGetErrorString(err), ")");
    return 0;
  }
  if (n == 0 && why_not) *why_not = "no CUDA device found (cudaGetDeviceCount returned 0)";
  return n;
}

int device_compute_capability(int device) {
  static std::mutex mu;
  static std::map<int, int> known;
  std::lock_guard<std::mutex> lock(mu);
  auto it = known.find(device);
  if (it != known.end()) return it->second;
  int major = 0, minor = 0;
  DEX_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  DEX_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return known[device] = major * 10 + minor;
}

std::string cuda_device_summary(int device) {
  cudaDeviceProp prop{};
  DEX_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  return str(prop.name, ", sm_", prop.major, prop.minor, ", ", prop.multiProcessorCount, " SMs, ",
             prop.l2CacheSize >> 20, " MiB L2, driver ", drv / 1000, ".", (drv % 1000) / 10, ", runtime ", rt / 1000,
             ".", (rt % 1000) / 10);
}

}  // namespace dex
