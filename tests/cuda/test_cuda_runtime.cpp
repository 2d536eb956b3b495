// CUDA runtime pieces that can be checked with or without a GPU: the checked-call macro's message, the backend's
// availability reason, and the device allocator's byte counter (GPU only).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_runtime.h"

namespace dex {
namespace {

TEST(CudaRuntime, CheckMacroThrowsWithExpressionAndError) {
  try {
    DEX_CUDA_CHECK(static_cast<cudaError_t>(cudaErrorInvalidValue));
    FAIL() << "DEX_CUDA_CHECK did not throw";
  } catch (const CudaError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cudaErrorInvalidValue"), std::string::npos) << m;
    EXPECT_NE(m.find("test_cuda_runtime.cpp"), std::string::npos) << m;
    EXPECT_NE(m.find("TestBody"), std::string::npos) << m;  // the function
  }
  EXPECT_NO_THROW(DEX_CUDA_CHECK(cudaSuccess));
}

// Without a device the backend says why, and asking for it throws that reason; with one, it is registered.
TEST(CudaRuntime, BackendAvailabilityIsExplained) {
  std::string why;
  const int devices = cuda_device_count(&why);
  std::string why_backend;
  const bool avail = backend_available(Device::CUDA, &why_backend);
  EXPECT_EQ(avail, devices > 0);
  if (!avail) {
    EXPECT_FALSE(why_backend.empty());
    try {
      backend(Device::CUDA);
      FAIL() << "backend(CUDA) did not throw without a device";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(why_backend), std::string::npos) << e.what();
    }
  } else {
    EXPECT_EQ(backend(Device::CUDA).name, "cuda");
    EXPECT_EQ(backend(Device::CUDA).allocator, &cuda_allocator());
  }
}

TEST(CudaRuntime, DeviceArenaCountsBytes) {
  std::string why;
  if (cuda_device_count(&why) == 0) GTEST_SKIP() << why;
  const int64_t before = memory_counters().device_bytes.load();
  {
    Arena arena(cuda_allocator(), 1 << 20, "test");
    void* p = arena.allocate(1000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kArenaAlign, 0u);
    EXPECT_EQ(memory_counters().device_bytes.load() - before, int64_t(1) << 20);
    DeviceBuffer<float> b(100);
    EXPECT_NE(b.data(), nullptr);
  }
  EXPECT_EQ(memory_counters().device_bytes.load(), before);
}

}  // namespace
}  // namespace dex
