// CUDA runtime support for dex: checked calls that throw, the device BlockAllocator (so dex::Arena works on
// device memory), DeviceBuffer<T> (RAII, move-only), and the launch check every launcher ends with.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "kernels/arena.h"
#include "kernels/common.h"

namespace dex {

// A failed CUDA runtime call: the message names the expression, file, line, function and the CUDA error.
class CudaError : public Error {
 public:
  using Error::Error;
};

namespace detail {
[[noreturn]] void throw_cuda(const char* expr, const char* file, int line, const char* func, cudaError_t err);
}  // namespace detail

// True when DEX_SYNC_CHECK=1 is set in the environment (read once): every launch then synchronises, so an
// asynchronous fault is blamed on the kernel that caused it.
bool sync_check_enabled();
// Ends every launcher: throws on a launch error; with DEX_SYNC_CHECK=1 also synchronises `stream`.
void launch_check(const char* kernel, cudaStream_t stream, const char* file, int line);

// The device allocator: cudaMalloc / cudaFree, counted in memory_counters().device_bytes.
BlockAllocator& cuda_allocator();

// Number of CUDA devices (0 when there is no driver or device); `why_not` receives the reason when 0.
int cuda_device_count(std::string* why_not = nullptr);
// Compute capability of `device` as major * 10 + minor (90 on an H100 / H200), queried once per device.
int device_compute_capability(int device);
// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 50 MiB L2, driver 13.0, runtime 13.0" for logs and benchmark context.
std::string cuda_device_summary(int device = 0);

// RAII owner of `count` elements of device memory, move-only. The destructor never throws.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) : m_buf(cuda_allocator(), count * sizeof(T)), m_count(count) {}
  T* data() const { return m_buf.as<T>(); }
  size_t size() const { return m_count; }
  size_t bytes() const { return m_count * sizeof(T); }

 private:
  Buffer m_buf;
  size_t m_count = 0;
};

}  // namespace dex

// DEX_CUDA_CHECK(expr): evaluates expr once; throws dex::CudaError on anything but cudaSuccess.
#define DEX_CUDA_CHECK(expr)                                                          \
  do {                                                                                \
    cudaError_t dex_err_ = (expr);                                                    \
    if (dex_err_ != cudaSuccess) ::dex::detail::throw_cuda(#expr, __FILE__, __LINE__, __func__, dex_err_); \
  } while (0)

// DEX_LAUNCH_CHECK(name, stream): after every <<<>>> launch.
#define DEX_LAUNCH_CHECK(name, stream) ::dex::launch_check(name, stream, __FILE__, __LINE__)
