// The fp32 tiled conv fprop (kernels/cuda/conv3d_f32_tiled.cu) against the CPU reference. GPU rows skip, saying
// why, without a device. Not yet run on a GPU when written (see the kernel's header).
// Tolerance (STYLE.md §2): the two sum the same taps x C products in fp32 in different orders: per output at most
// ~sqrt(taps x C) roundings of the running sum, rtol = 4 sqrt(taps C) u, atol = rtol x rms(ref), u = 2^-24.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/conv3d.h"
#include "kernels/cuda/cuda_runtime.h"
#include "kernels/cuda/ops_cuda.h"
#include "tests/cuda/conv_case.h"
#include "tests/testing.h"

namespace dex {
namespace {

using Case = NamedConv;

const std::vector<Case>& cases() {
  static const std::vector<Case> v = {
      {"C32K32k3s1_D9H7W6", shape(1, 32, 32, 9, 7, 6, 3, 1, 1, 1)},         // BN 32, M = 378 (not a multiple of 64)
      {"C32K64k3s2_D9H8W7", shape(1, 32, 64, 9, 8, 7, 3, 2, 2, 2)},         // BN 64, stride 2, odd extents
      {"C64K96k3s221_D8H8W5", shape(1, 64, 96, 8, 8, 5, 3, 2, 2, 1)},       // K % 64 != 0: three BN-32 columns
      {"C48K32k1s2_D7H6W5", shape(1, 48, 32, 7, 6, 5, 1, 2, 2, 2)},         // 1x1x1 stride 2, C = 3 x 16
      {"N2C16K32k3s1_D5H6W4", shape(2, 16, 32, 5, 6, 4, 3, 1, 1, 1)},       // batch 2, one 16-channel step
      {"C32K32k3s1d2_D7H7W7", shape(1, 32, 32, 7, 7, 7, 3, 1, 1, 1, 2)},    // dilation 2
      {"C320K320k3s1_D4H4W8", shape(1, 320, 320, 4, 4, 8, 3, 1, 1, 1)},     // bottleneck widths
      {"C64K32k3s1_D16H16W16", shape(1, 64, 32, 16, 16, 16, 3, 1, 1, 1)},   // 64 row blocks
  };
  return v;
}

class ConvF32Tiled : public ::testing::TestWithParam<Case> {};

TEST_P(ConvF32Tiled, MatchesTheReferenceWritesEveryOutputAndRepeats) {
  std::string why;
  if (cuda_device_count(&why) == 0) GTEST_SKIP() << "no CUDA device: " << why;
  const Conv3dParams p = GetParam().p;
  ASSERT_TRUE(conv3d_fprop_f32_tiled_supports(p, &why)) << why;
  const uint64_t seed = 1100 + uint64_t(p.C) * 7 + uint64_t(p.K);
  const std::vector<float> x = testing::random_vector(p.in_elems(), seed);
  const std::vector<float> w = testing::random_vector(p.weight_elems(), seed + 1);
  std::vector<float> ref(size_t(p.out_elems()));
  conv3d_fprop_cpu(p, x.data(), w.data(), ref.data(), CpuConvImpl::Reference);

  constexpr int64_t kGuard = 64;  // floats each side: keeps y 16-byte aligned
  DeviceBuffer<float> dx(x.size()), dw(w.size()), dy(size_t(p.out_elems() + 2 * kGuard));
  DEX_CUDA_CHECK(cudaMemcpy(dx.data(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  DEX_CUDA_CHECK(cudaMemcpy(dw.data(), w.data(), w.size() * 4, cudaMemcpyHostToDevice));
  auto run = [&] {
    DEX_CUDA_CHECK(cudaMemset(dy.data(), 0xFF, dy.size() * 4));  // NaN everywhere: unwritten outputs show
    conv3d_fprop_f32_tiled_cuda(p, dx.data(), dw.data(), dy.data() + kGuard);
    DEX_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> h(dy.size());
    DEX_CUDA_CHECK(cudaMemcpy(h.data(), dy.data(), h.size() * 4, cudaMemcpyDeviceToHost));
    return h;
  };
  const std::vector<float> h = run();
  uint32_t guard_bits = 0;
  for (int64_t i = 0; i < kGuard; ++i) {
    uint32_t a, b;
    std::memcpy(&a, &h[size_t(i)], 4);
    std::memcpy(&b, &h[size_t(kGuard + p.out_elems() + i)], 4);
    guard_bits |= ~a | ~b;
  }
  EXPECT_EQ(guard_bits, 0u) << "the guard bands around y were written";
  const std::vector<float> y(h.begin() + kGuard, h.end() - kGuard);
  const double rtol = 4.0 * std::sqrt(double(p.taps()) * p.C) * 5.9604644775390625e-08;
  const double rms = testing::rms(std::vector<double>(ref.begin(), ref.end()));
  EXPECT_CLOSE(y.data(), ref.data(), int64_t(y.size()), rtol, rtol * rms, 1e-12);
  const std::vector<float> again = run();
  EXPECT_EQ(0, std::memcmp(again.data(), h.data(), h.size() * 4)) << "a second run differs (not deterministic)";
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvF32Tiled, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

// Host only (runs without a GPU): what it takes and why it refuses.
TEST(ConvF32TiledSupports, ShapesAndReasons) {
  std::string why;
  EXPECT_TRUE(conv3d_fprop_f32_tiled_supports(shape(1, 32, 32, 8, 8, 8, 3, 1, 1, 1), &why)) << why;
  EXPECT_FALSE(conv3d_fprop_f32_tiled_supports(shape(1, 3, 32, 8, 8, 8, 3, 1, 1, 1), &why));
  EXPECT_NE(why.find("C % 16"), std::string::npos) << why;
  EXPECT_FALSE(conv3d_fprop_f32_tiled_supports(shape(1, 32, 2, 8, 8, 8, 1, 1, 1, 1), &why));
  EXPECT_NE(why.find("K % 32"), std::string::npos) << why;
  alignas(16) static float dummy[64];
  EXPECT_THROW(conv3d_fprop_f32_tiled_cuda(shape(1, 32, 32, 8, 8, 8, 3, 1, 1, 1), dummy + 1, dummy, dummy), Error);
}

}  // namespace
}  // namespace dex
