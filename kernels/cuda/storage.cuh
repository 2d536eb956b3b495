// Storage types of the non-convolution CUDA kernels: a kernel is a template on its storage type T (float, __half or
// __nv_bfloat16) and does its arithmetic in fp32 (or double, where the fp32 kernel does): to_float() widens a stored
// value exactly, from_float<T>() rounds to nearest even (identity for float, so the fp32 instantiation computes
// exactly what the fp32-only kernel did). storage_dispatch() maps a DType to the instantiation on the host.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common.h"

namespace dex {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Calls f(T{}) with T the storage type of `dtype` (F32, F16 or BF16); any other dtype is an error naming `who`.
template <class F>
void storage_dispatch(DType dtype, const char* who, F&& f) {
  switch (dtype) {
    case DType::F32: f(float{}); return;
    case DType::F16: f(__half{}); return;
    case DType::BF16: f(__nv_bfloat16{}); return;
    default: break;
  }
  throw Error(str(who, ": storage dtype must be f32, f16 or bf16, got ", dtype_name(dtype)));
}

}  // namespace dex
