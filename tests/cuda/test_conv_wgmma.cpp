// GPU rows of conv3d fprop v3 (wgmma, kernels/cuda/conv3d_wgmma.cu) against the CPU reference and against v2
// (mma.sync), on small shapes that cover every tile configuration (BK 32 / 64, BN 32 / 64 / 128 / 256), stride 1 / 2 /
// (2,2,1), 3x3x3 and 1x1x1, dilation 2, batch 2 and ragged edges (M not a multiple of 128, several N tiles).
// Per row (f16 and bf16), each run writes into an output poisoned with NaN and surrounded by NaN guard bands:
//  1. guard bands byte-identical after the kernel (no out-of-bounds writes);
//  2. exactness: integer inputs in [-2, 2] (exact in f16 and bf16; every fp32 partial sum is an exact integer), so
//     v3 must equal the reference (rounded once to the storage type) bit for bit, and v2 as well;
//  3. random inputs in [-1, 1] (the reference sees the same rounded values): |y - r| <= atol + rtol |r| with
//     rtol = 2 u_out + 4 sqrt(27 C) u_fp32, atol = rtol rms(ref), and NMSE <= 1e-6 (f16) / 3e-5 (bf16)
//     (STYLE.md §2, same derivation as tests/cuda/test_backend_ops.cpp); v3 against v2 with twice that bound;
//  4. determinism: a second run is bitwise equal.
// Without an sm_90 device every GPU row skips and says why; the capability rows run everywhere.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "bench/dynunet_shapes.h"
#include "kernels/conv3d.h"
#include "kernels/cuda/conv3d_wgmma.h"
#include "kernels/cuda/cuda_runtime.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/half.h"
#include "tests/cuda/conv_case.h"
#include "tests/testing.h"

namespace dex {
namespace {

constexpr int64_t kGuard = 64;  // 16-bit guard elements on each side (128 bytes: keeps y 16-byte aligned)
constexpr uint16_t kPoison = 0xFFFF;  // a NaN in f16 and in bf16

// Empty when an sm_90 device is present, else why the GPU rows skip.
std::string no_sm90_reason() {
  std::string why;
  if (cuda_device_count(&why) == 0) return "no CUDA device: " + why;
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
    return "cannot query the device's compute capability";
  if (major != 9 || minor != 0) return str("v3 (wgmma) needs sm_90 (H100 / H200), device is sm_", major, minor);
  return "";
}

uint16_t to_bits(DType t, float v) { return t == DType::BF16 ? f32_to_bf16_bits(v) : f32_to_f16_bits(v); }
float from_bits(DType t, uint16_t b) { return t == DType::BF16 ? bf16_bits_to_f32(b) : f16_bits_to_f32(b); }
float round_to(DType t, float v) { return t == DType::BF16 ? round_bf16(v) : round_f16(v); }

enum class Impl { V3, V2, Best };

// One device run into a guarded, poisoned output; returns the output's bits. Fails the test on a touched guard band.
std::vector<uint16_t> run(Impl impl, const Conv3dParams& p, DType t, const std::vector<uint16_t>& xb,
                          const std::vector<uint16_t>& wb) {
  DeviceBuffer<uint16_t> x(xb.size()), w(wb.size()), y(size_t(p.out_elems() + 2 * kGuard));
  DEX_CUDA_CHECK(cudaMemcpy(x.data(), xb.data(), xb.size() * 2, cudaMemcpyHostToDevice));
  DEX_CUDA_CHECK(cudaMemcpy(w.data(), wb.data(), wb.size() * 2, cudaMemcpyHostToDevice));
  std::vector<uint16_t> host(y.size(), kPoison);
  DEX_CUDA_CHECK(cudaMemcpy(y.data(), host.data(), host.size() * 2, cudaMemcpyHostToDevice));
  uint16_t* body = y.data() + kGuard;
  if (impl == Impl::V3) conv3d_fprop_wgmma(p, t, x.data(), w.data(), body);
  else conv3d_fprop_cuda(p, t, x.data(), w.data(), body, impl == Impl::V2 ? ConvVariant::Mma : ConvVariant::Best);
  DEX_CUDA_CHECK(cudaDeviceSynchronize());
  DEX_CUDA_CHECK(cudaMemcpy(host.data(), y.data(), host.size() * 2, cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < kGuard; ++i) {
    EXPECT_EQ(host[size_t(i)], kPoison) << "guard band before y touched at " << i - kGuard;
    EXPECT_EQ(host[size_t(kGuard + p.out_elems() + i)], kPoison) << "guard band after y touched at +" << i;
  }
  return std::vector<uint16_t>(host.begin() + kGuard, host.end() - kGuard);
}

using Case = NamedConv;
struct Row {
  Case c;
  DType t;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> v = {
      {"C32K32k3s1_D5H6W7", shape(1, 32, 32, 5, 6, 7, 3, 1, 1, 1)},          // BK 32, BN 32, ragged M = 210
      {"C64K64k3s2_D9H8W7", shape(1, 64, 64, 9, 8, 7, 3, 2, 2, 2)},          // BK 64, BN 64, stride 2
      {"C32K64k3s221_D8H8W5", shape(1, 32, 64, 8, 8, 5, 3, 2, 2, 1)},        // stride (2,2,1)
      {"C64K128k1s1_D5H5W7", shape(1, 64, 128, 5, 5, 7, 1, 1, 1, 1)},        // 1x1x1, BN 128
      {"C32K64k1s2_D7H6W5", shape(1, 32, 64, 7, 6, 5, 1, 2, 2, 2)},          // 1x1x1 stride 2 (row gather)
      {"C64K256k3s1_D4H4W6", shape(1, 64, 256, 4, 4, 6, 3, 1, 1, 1)},        // BN 256
      {"C96K96k3s1_D3H5W4", shape(1, 96, 96, 3, 5, 4, 3, 1, 1, 1)},          // 3 BK-32 chunks, 3 BN-32 tiles
      {"C320K320k3s1_D4H4W4", shape(1, 320, 320, 4, 4, 4, 3, 1, 1, 1)},      // bottleneck widths: 5 x BN 64
      {"C128K256k3s2_D8H8W8", shape(1, 128, 256, 8, 8, 8, 3, 2, 2, 2)},      // downsample into 256
      {"N2C32K32k3s1_D4H5W6", shape(2, 32, 32, 4, 5, 6, 3, 1, 1, 1)},        // batch 2
      {"C32K32k3s1d2_D6H6W6", shape(1, 32, 32, 6, 6, 6, 3, 1, 1, 1, 2)},     // dilation 2
      {"C64K32k3s1_D16H16W16", shape(1, 64, 32, 16, 16, 16, 3, 1, 1, 1)},    // 32 CTAs, upsamples.4.conv1's C/K
  };
  return v;
}
std::vector<Row> rows() {
  std::vector<Row> r;
  for (const Case& c : cases())
    for (DType t : {DType::F16, DType::BF16}) r.push_back({c, t});
  return r;
}

class ConvWgmma : public ::testing::TestWithParam<Row> {};

TEST_P(ConvWgmma, ExactOnIntegers) {
  const std::string why = no_sm90_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  const Conv3dParams p = GetParam().c.p;
  const DType t = GetParam().t;
  const uint64_t seed = 700 + uint64_t(p.C) * 3 + uint64_t(p.K);
  std::vector<float> x = testing::random_ints(p.in_elems(), seed, -2, 2);
  std::vector<float> w = testing::random_ints(p.weight_elems(), seed + 1, -2, 2);
  std::vector<float> ref(size_t(p.out_elems()));
  conv3d_fprop_cpu(p, x.data(), w.data(), ref.data(), CpuConvImpl::Reference);
  std::vector<uint16_t> xb(x.size()), wb(w.size());
  for (size_t i = 0; i < x.size(); ++i) xb[i] = to_bits(t, x[i]);
  for (size_t i = 0; i < w.size(); ++i) wb[i] = to_bits(t, w[i]);
  const std::vector<uint16_t> y3 = run(Impl::V3, p, t, xb, wb);
  int64_t bad = 0;
  for (size_t i = 0; i < y3.size(); ++i)
    if (y3[i] != to_bits(t, ref[i]) && bad++ < 5)
      ADD_FAILURE() << "v3 element " << i << ": got " << from_bits(t, y3[i]) << " (bits " << y3[i] << "), expected "
                    << ref[i] << " (seed " << seed << ")";
  EXPECT_EQ(bad, 0);
  if (conv3d_fprop_cuda_supports(p, t, ConvVariant::Mma)) {
    const std::vector<uint16_t> y2 = run(Impl::V2, p, t, xb, wb);
    EXPECT_EQ(y2, y3) << "v2 and v3 differ on integer data";
  }
  // Best goes through the dispatcher (v3 where conv3d_fprop_best_is_wgmma says so, else v2 / v1): the same bits.
  EXPECT_EQ(run(Impl::Best, p, t, xb, wb), y3) << "Best (" << (conv3d_fprop_best_is_wgmma(p, t) ? "v3" : "v2/v1")
                                                << ") differs from v3 on integer data";
}

TEST_P(ConvWgmma, RandomWithinDerivedToleranceAndDeterministic) {
  const std::string why = no_sm90_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  const Conv3dParams p = GetParam().c.p;
  const DType t = GetParam().t;
  const uint64_t seed = 900 + uint64_t(p.C) * 3 + uint64_t(p.K);
  std::vector<float> x = testing::random_vector(p.in_elems(), seed);
  std::vector<float> w = testing::random_vector(p.weight_elems(), seed + 1);
  for (auto& v : x) v = round_to(t, v);
  for (auto& v : w) v = round_to(t, v);
  std::vector<float> ref(size_t(p.out_elems()));
  conv3d_fprop_cpu(p, x.data(), w.data(), ref.data(), CpuConvImpl::Reference);
  std::vector<uint16_t> xb(x.size()), wb(w.size());
  for (size_t i = 0; i < x.size(); ++i) xb[i] = to_bits(t, x[i]);
  for (size_t i = 0; i < w.size(); ++i) wb[i] = to_bits(t, w[i]);
  const std::vector<uint16_t> y3 = run(Impl::V3, p, t, xb, wb);
  std::vector<float> yf(y3.size());
  for (size_t i = 0; i < y3.size(); ++i) yf[i] = from_bits(t, y3[i]);

  const double u_out = t == DType::BF16 ? 3.90625e-03 : 4.8828125e-04;
  const double k_reduce = double(p.taps()) * p.C;
  const double rtol = 2 * u_out + 4.0 * std::sqrt(k_reduce) * 5.9604644775390625e-08;
  const double nmse = t == DType::BF16 ? 3e-5 : 1e-6;
  const double rms = testing::rms(std::vector<double>(ref.begin(), ref.end()));
  EXPECT_CLOSE(yf.data(), ref.data(), int64_t(yf.size()), rtol, rtol * rms, nmse);

  EXPECT_EQ(run(Impl::V3, p, t, xb, wb), y3) << "a second v3 run differs (not deterministic)";
  if (conv3d_fprop_cuda_supports(p, t, ConvVariant::Mma)) {
    const std::vector<uint16_t> y2 = run(Impl::V2, p, t, xb, wb);
    std::vector<float> y2f(y2.size());
    for (size_t i = 0; i < y2.size(); ++i) y2f[i] = from_bits(t, y2[i]);
    EXPECT_CLOSE(yf.data(), y2f.data(), int64_t(yf.size()), 2 * rtol, 2 * rtol * rms, 4 * nmse);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvWgmma, ::testing::ValuesIn(rows()), [](const ::testing::TestParamInfo<Row>& i) {
  return std::string(i.param.c.name) + (i.param.t == DType::BF16 ? "_bf16" : "_f16");
});

// ---- capability (host only: runs without a GPU) ----------------------------------------------------------------------
TEST(ConvWgmmaSupports, ShapesAndReasons) {
  std::string why;
  EXPECT_TRUE(conv3d_fprop_wgmma_supports(shape(1, 32, 32, 8, 8, 8, 3, 1, 1, 1), DType::F16, &why)) << why;
  EXPECT_TRUE(conv3d_fprop_wgmma_supports(shape(1, 320, 320, 4, 4, 8, 3, 2, 2, 1), DType::BF16, &why)) << why;
  EXPECT_FALSE(conv3d_fprop_wgmma_supports(shape(1, 3, 32, 8, 8, 8, 3, 1, 1, 1), DType::F16, &why));
  EXPECT_NE(why.find("C % 32"), std::string::npos) << why;
  EXPECT_FALSE(conv3d_fprop_wgmma_supports(shape(1, 32, 2, 8, 8, 8, 1, 1, 1, 1), DType::F16, &why));
  EXPECT_NE(why.find("K % 32"), std::string::npos) << why;
  EXPECT_FALSE(conv3d_fprop_wgmma_supports(shape(1, 32, 32, 8, 8, 8, 3, 1, 1, 1), DType::F32, &why));
  EXPECT_NE(why.find("f16 or bf16"), std::string::npos) << why;
}

// Every DynUNet conv except the C = 3 input convs and the K = 2 output conv has a v3 path (26 of 29 at any patch).
TEST(ConvWgmmaSupports, DynUNetLayers) {
  int supported = 0, convs = 0;
  for (const ConvLayerShape& l : dynunet_conv_shapes(64)) {
    if (l.transposed) continue;
    ++convs;
    const bool expect = l.conv.C % 32 == 0 && l.conv.K % 32 == 0;
    EXPECT_EQ(conv3d_fprop_wgmma_supports(l.conv, DType::F16), expect) << l.name;
    supported += expect;
  }
  EXPECT_EQ(convs, 29);
  EXPECT_EQ(supported, 26);
}

TEST(ConvWgmmaSupports, LauncherRejectsBeforeTouchingTheDevice) {
  const Conv3dParams p = shape(1, 3, 32, 8, 8, 8, 3, 1, 1, 1);
  alignas(16) static uint16_t dummy[64];
  EXPECT_THROW(conv3d_fprop_wgmma(p, DType::F16, dummy, dummy, dummy), Error);  // C = 3
  const Conv3dParams q = shape(1, 32, 32, 8, 8, 8, 3, 1, 1, 1);
  try {
    conv3d_fprop_wgmma(q, DType::F16, dummy + 1, dummy, dummy);  // x 2 bytes off a 16-byte boundary
    ADD_FAILURE() << "misaligned x accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("16-byte aligned"), std::string::npos) << e.what();
  }
}

// Best's rule, from the H100 run of 2026-11-27 (bench/results/): v3 on every DynUNet fprop layer it supports except
// the two 32 -> 32 ones (input_block.conv2, upsamples.4.conv_block.conv2), where v2 measured faster.
TEST(ConvWgmmaSupports, BestTakesV3WhereItMeasuredFaster) {
  std::vector<std::string> v3, other;
  for (const ConvLayerShape& l : dynunet_conv_shapes(128)) {
    if (l.transposed) continue;
    (conv3d_fprop_best_is_wgmma(l.conv, DType::F16) ? v3 : other).push_back(l.name);
    EXPECT_EQ(conv3d_fprop_best_is_wgmma(l.conv, DType::F16), conv3d_fprop_best_is_wgmma(l.conv, DType::BF16))
        << l.name;
    EXPECT_FALSE(conv3d_fprop_best_is_wgmma(l.conv, DType::F32)) << l.name << ": v3 has no fp32 path";
  }
  EXPECT_EQ(v3.size(), 24u);
  const std::vector<std::string> expect_other = {"input_block.conv1", "input_block.conv2", "input_block.conv3",
                                                 "upsamples.4.conv_block.conv2", "output_block.conv"};
  for (const std::string& n : expect_other)
    EXPECT_NE(std::find(other.begin(), other.end(), n), other.end()) << n << " should stay off v3";
  EXPECT_EQ(other.size(), expect_other.size());
}

// The public dispatcher: ConvVariant::Wgmma reaches v3 (same capability answers, same refusals) for fprop only,
// and Best's choice is the rule above (conv3d_fprop_best_is_wgmma).
TEST(ConvWgmmaSupports, DispatcherRoutesTheWgmmaVariantForFpropOnly) {
  for (const ConvLayerShape& l : dynunet_conv_shapes(64)) {
    if (l.transposed) continue;
    std::string a, b;
    EXPECT_EQ(conv3d_fprop_cuda_supports(l.conv, DType::F16, ConvVariant::Wgmma, &a),
              conv3d_fprop_wgmma_supports(l.conv, DType::F16, &b)) << l.name;
    EXPECT_EQ(a, b) << l.name;
  }
  const Conv3dParams p = shape(1, 32, 32, 8, 8, 8, 3, 1, 1, 1);
  std::string why;
  EXPECT_FALSE(conv3d_dgrad_cuda_supports(p, DType::F16, ConvVariant::Wgmma, &why));
  EXPECT_NE(why.find("fprop only"), std::string::npos) << why;
  EXPECT_FALSE(conv3d_wgrad_cuda_supports(p, DType::F16, ConvVariant::Wgmma, &why));
  EXPECT_NE(why.find("fprop only"), std::string::npos) << why;
  EXPECT_STREQ(conv_variant_name(ConvVariant::Wgmma), "v3");
  // A C = 3 problem through the dispatcher throws with v3's reason before touching the device.
  alignas(16) static uint16_t dummy[64];
  try {
    conv3d_fprop_cuda(shape(1, 3, 32, 8, 8, 8, 3, 1, 1, 1), DType::F16, dummy, dummy, dummy, ConvVariant::Wgmma);
    ADD_FAILURE() << "C = 3 accepted by the wgmma variant";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("C % 32"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dex
