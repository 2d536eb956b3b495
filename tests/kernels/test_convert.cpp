// fp32 <-> fp16 / bf16 array conversion: bit-exact parity with torch's .half() / .bfloat16() and their
// widening (round to nearest even, subnormals, overflow to inf, inf/NaN), round trip, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/elementwise.h"
#include "tests/testing.h"

namespace dex {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(convert, f32_to_f16_and_bf16_match_pytorch_bit_exactly) {
  auto fx = testing::load_fixture(testing::test_data("ops/convert.bin"));
  std::vector<float> x = fx.at("x").f32();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint16_t> h(n), b(n);
  convert_f32_to_f16_cpu(n, x.data(), h.data());
  convert_f32_to_bf16_cpu(n, x.data(), b.data());
  int64_t bad_h = 0, bad_b = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool nan = std::isnan(x[i]);  // any NaN pattern is fine for NaN input; torch's payload is not a contract
    const uint16_t rh = static_cast<uint16_t>(fx.at("f16_bits").data[i]), rb = static_cast<uint16_t>(fx.at("bf16_bits").data[i]);
    if (nan ? ((h[i] & 0x7c00u) != 0x7c00u || (h[i] & 0x3ffu) == 0) : h[i] != rh) {
      ++bad_h;
      ADD_FAILURE() << "f16 of " << x[i] << ": got 0x" << std::hex << h[i] << ", torch 0x" << rh;
    }
    if (nan ? ((b[i] & 0x7f80u) != 0x7f80u || (b[i] & 0x7fu) == 0) : b[i] != rb) {
      ++bad_b;
      ADD_FAILURE() << "bf16 of " << x[i] << ": got 0x" << std::hex << b[i] << ", torch 0x" << rb;
    }
  }
  std::cout << "[ parity   ] convert f32->f16: " << bad_h << " of " << n << " differ; f32->bf16: " << bad_b << "\n";
}

TEST(convert, f16_and_bf16_to_f32_match_pytorch_bit_exactly) {
  auto fx = testing::load_fixture(testing::test_data("ops/convert.bin"));
  const auto& pat = fx.at("bits").data;
  const int64_t n = static_cast<int64_t>(pat.size());
  std::vector<uint16_t> src(n);
  for (int64_t i = 0; i < n; ++i) src[i] = static_cast<uint16_t>(pat[i]);
  std::vector<float> fh(n), fb(n);
  convert_f16_to_f32_cpu(n, src.data(), fh.data());
  convert_bf16_to_f32_cpu(n, src.data(), fb.data());
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float rh = static_cast<float>(fx.at("f16_to_f32").data[i]), rb = static_cast<float>(fx.at("bf16_to_f32").data[i]);
    const bool ok_h = std::isnan(rh) ? std::isnan(fh[i]) : bits(fh[i]) == bits(rh);
    const bool ok_b = std::isnan(rb) ? std::isnan(fb[i]) : bits(fb[i]) == bits(rb);
    if (!ok_h || !ok_b) {
      ++bad;
      ADD_FAILURE() << "pattern 0x" << std::hex << src[i] << ": f16 " << fh[i] << " vs " << rh << ", bf16 " << fb[i]
                    << " vs " << rb;
    }
  }
  std::cout << "[ parity   ] convert f16/bf16->f32: " << bad << " of " << n << " patterns differ\n";
}

// Every finite or infinite fp16 / bf16 value survives f16 -> f32 -> f16 unchanged (exhaustive).
TEST(convert, round_trip_is_identity_for_every_non_nan_pattern) {
  std::vector<uint16_t> all(65536), back(65536);
  std::vector<float> wide(65536);
  for (int i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  convert_f16_to_f32_cpu(65536, all.data(), wide.data());
  convert_f32_to_f16_cpu(65536, wide.data(), back.data());
  for (int i = 0; i < 65536; ++i)
    if (!std::isnan(wide[i])) {
      ASSERT_EQ(back[i], all[i]) << "f16 pattern " << i;
    }
  convert_bf16_to_f32_cpu(65536, all.data(), wide.data());
  convert_f32_to_bf16_cpu(65536, wide.data(), back.data());
  for (int i = 0; i < 65536; ++i)
    if (!std::isnan(wide[i])) {
      ASSERT_EQ(back[i], all[i]) << "bf16 pattern " << i;
    }
}

TEST(convert, bad_input_throws) {
  float f = 0;
  uint16_t h = 0;
  EXPECT_THROW(convert_f32_to_f16_cpu(-1, &f, &h), Error);
  EXPECT_THROW(convert_f32_to_bf16_cpu(1, nullptr, &h), Error);
  EXPECT_THROW(convert_f16_to_f32_cpu(1, &h, nullptr), Error);
  EXPECT_THROW(convert_bf16_to_f32_cpu(-2, &h, &f), Error);
}

}  // namespace
}  // namespace dex
