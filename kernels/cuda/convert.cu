// CUDA fp32 <-> fp16 / bf16 array conversion (CPU reference kernels/cpu/convert.cpp), with the same bit-level
// routines (kernels/half.h), so results are bit-identical to the CPU, NaN payloads included. fp16 <-> bf16 goes
// through fp32 (exact widening, one rounding), i.e. the composition of the two CPU conversions.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/half.h"

namespace dex {
namespace {
__global__ void convert_f32_to_16_kernel_v1(int64_t n, const float* s, uint16_t* d, bool bf) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    d[i] = bf ? f32_to_bf16_bits(s[i]) : f32_to_f16_bits(s[i]);
}
__global__ void convert_16_to_f32_kernel_v1(int64_t n, const uint16_t* s, float* d, bool bf) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    d[i] = bf ? bf16_bits_to_f32(s[i]) : f16_bits_to_f32(s[i]);
}
// to_bf = true: fp16 -> bf16, else bf16 -> fp16.
__global__ void convert_16_to_16_kernel_v1(int64_t n, const uint16_t* s, uint16_t* d, bool to_bf) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    d[i] = to_bf ? f32_to_bf16_bits(f16_bits_to_f32(s[i])) : f32_to_f16_bits(bf16_bits_to_f32(s[i]));
}
void to16(const char* who, int64_t n, const float* src, uint16_t* dst, bool bf, cudaStream_t stream) {
  DEX_CHECK(n >= 0, who, ": negative element count ", n);
  if (n == 0) return;
  DEX_CHECK(src && dst, who, ": src and dst must not be null");
  convert_f32_to_16_kernel_v1<<<grid_1d(n, 256), 256, 0, stream>>>(n, src, dst, bf);
  DEX_LAUNCH_CHECK("convert_f32_to_16_kernel_v1", stream);
}
void from16(const char* who, int64_t n, const uint16_t* src, float* dst, bool bf, cudaStream_t stream) {
  DEX_CHECK(n >= 0, who, ": negative element count ", n);
  if (n == 0) return;
  DEX_CHECK(src && dst, who, ": src and dst must not be null");
  convert_16_to_f32_kernel_v1<<<grid_1d(n, 256), 256, 0, stream>>>(n, src, dst, bf);
  DEX_LAUNCH_CHECK("convert_16_to_f32_kernel_v1", stream);
}
void between16(const char* who, int64_t n, const uint16_t* src, uint16_t* dst, bool to_bf, cudaStream_t stream) {
  DEX_CHECK(n >= 0, who, ": negative element count ", n);
  if (n == 0) return;
  DEX_CHECK(src && dst, who, ": src and dst must not be null");
  convert_16_to_16_kernel_v1<<<grid_1d(n, 256), 256, 0, stream>>>(n, src, dst, to_bf);
  DEX_LAUNCH_CHECK("convert_16_to_16_kernel_v1", stream);
}
}  // namespace

void convert_f32_to_f16_cuda(int64_t n, const float* src, uint16_t* dst, cudaStream_t stream) {
  to16("convert_f32_to_f16_cuda", n, src, dst, false, stream);
}
void convert_f16_to_f32_cuda(int64_t n, const uint16_t* src, float* dst, cudaStream_t stream) {
  from16("convert_f16_to_f32_cuda", n, src, dst, false, stream);
}
void convert_f32_to_bf16_cuda(int64_t n, const float* src, uint16_t* dst, cudaStream_t stream) {
  to16("convert_f32_to_bf16_cuda", n, src, dst, true, stream);
}
void convert_bf16_to_f32_cuda(int64_t n, const uint16_t* src, float* dst, cudaStream_t stream) {
  from16("convert_bf16_to_f32_cuda", n, src, dst, true, stream);
}
void convert_f16_to_bf16_cuda(int64_t n, const uint16_t* src, uint16_t* dst, cudaStream_t stream) {
  between16("convert_f16_to_bf16_cuda", n, src, dst, true, stream);
}
void convert_bf16_to_f16_cuda(int64_t n, const uint16_t* src, uint16_t* dst, cudaStream_t stream) {
  between16("convert_bf16_to_f16_cuda", n, src, dst, false, stream);
}
}  // namespace dex
