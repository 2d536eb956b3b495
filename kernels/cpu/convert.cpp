// fp32 <-> fp16 / bf16 array conversion with kernels/half.h (round to nearest even, IEEE / PyTorch bit patterns).
#include "kernels/elementwise.h"
#include "kernels/half.h"

namespace dex {

static void check_args(const char* who, int64_t n, const void* src, const void* dst) {
  DEX_CHECK(n >= 0, who, ": negative element count ", n);
  DEX_CHECK(n == 0 || (src && dst), who, ": src and dst must not be null");
}

void convert_f32_to_f16_cpu(int64_t n, const float* src, uint16_t* dst) {
  check_args("convert_f32_to_f16_cpu", n, src, dst);
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16_bits(src[i]);
}
void convert_f16_to_f32_cpu(int64_t n, const uint16_t* src, float* dst) {
  check_args("convert_f16_to_f32_cpu", n, src, dst);
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_bits_to_f32(src[i]);
}
void convert_f32_to_bf16_cpu(int64_t n, const float* src, uint16_t* dst) {
  check_args("convert_f32_to_bf16_cpu", n, src, dst);
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_bf16_bits(src[i]);
}
void convert_bf16_to_f32_cpu(int64_t n, const uint16_t* src, float* dst) {
  check_args("convert_bf16_to_f32_cpu", n, src, dst);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_bits_to_f32(src[i]);
}

}  // namespace dex
