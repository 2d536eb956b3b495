// grads_all_finite (train/loss_scaler.cpp): the host loop on the CPU, the device check (Backend::all_finite, one kernel
// and a 4-byte flag) when the parameters live on CUDA. Each case plants one inf / -inf / nan at the first, a middle or
// the last gradient and must see it; clean gradients (zeros and large finite values) must pass.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "layers/parameters.h"
#include "train/loss_scaler.h"

namespace dex {
namespace {

void check_device(Device d) {
  ParameterSet ps;
  ps.declare("a.bias", {4099}, ParamKind::Bias);  // odd sizes: the last element is not on a block boundary
  ps.declare("b.bias", {777}, ParamKind::Bias);
  ps.allocate(d);
  ps.zero_grad();
  const Backend& b = backend(d);
  const int64_t n = ps.numel();
  auto put = [&](int64_t i, float v) { b.copy(ps.grads() + i, d, &v, Device::CPU, sizeof(float), nullptr); };
  EXPECT_TRUE(grads_all_finite(ps)) << "zeroed gradients";
  put(5, std::numeric_limits<float>::max());
  put(n - 2, -std::numeric_limits<float>::max());
  EXPECT_TRUE(grads_all_finite(ps)) << "large finite gradients";
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()})
    for (int64_t at : {int64_t(0), n / 2, n - 1}) {
      put(at, bad);
      EXPECT_FALSE(grads_all_finite(ps)) << bad << " at " << at << " of " << n;
      put(at, 0.0f);
    }
  EXPECT_TRUE(grads_all_finite(ps)) << "after restoring";
}

TEST(GradsAllFinite, CpuHostLoopSeesInfAndNanAnywhere) { check_device(Device::CPU); }

TEST(GradsAllFinite, CudaDeviceCheckSeesInfAndNanAnywhere) {
  std::string why;
  if (!backend_available(Device::CUDA, &why)) GTEST_SKIP() << "CUDA backend not available: " << why;
  ASSERT_NE(backend(Device::CUDA).all_finite, nullptr) << "the CUDA table must fill all_finite";
  check_device(Device::CUDA);
}

}  // namespace
}  // namespace dex
