// Shared by conv3d.cu and conv_transpose3d.cu: storage-type load/store helpers and the flat argument struct.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/common.h"
#include "kernels/conv3d.h"
#include "kernels/conv_transpose3d.h"

namespace dex {

// ConvVariant::Wgmma (v3) exists for conv3d fprop only: every other pass's *_supports says so.
inline bool wgmma_is_fprop_only(std::string* why) {
  if (why) *why = "the wgmma variant (v3) implements conv3d fprop only";
  return false;
}

// 16-byte alignment, which the vectorised / cp.async loads of the mma and tiled kernels need.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Storage type of activations/weights in a kernel instantiation; accumulation is always fp32.
enum class St { F32, F16, BF16 };
inline St storage(DType t) {
  switch (t) {
    case DType::F32: return St::F32;
    case DType::F16: return St::F16;
    case DType::BF16: return St::BF16;
    default: throw Error(str("conv3d (CUDA): unsupported storage dtype ", dtype_name(t), " (f32, f16 or bf16)"));
  }
}

template <St S>
__device__ __forceinline__ float ld_st(const void* p, int64_t i) {
  if constexpr (S == St::F32) {
    return static_cast<const float*>(p)[i];
  } else if constexpr (S == St::F16) {
    return __half2float(static_cast<const __half*>(p)[i]);
  } else {
    return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  }
}
template <St S>
__device__ __forceinline__ void st_st(void* p, int64_t i, float v) {
  if constexpr (S == St::F32) {
    static_cast<float*>(p)[i] = v;
  } else if constexpr (S == St::F16) {
    static_cast<__half*>(p)[i] = __float2half_rn(v);
  } else {
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  }
}
// dst = v (overwrite) or dst += v (accumulate, in fp32, then rounded to the storage type).
template <St S>
__device__ __forceinline__ void st_grad(void* p, int64_t i, float v, bool accumulate) {
  st_st<S>(p, i, accumulate ? ld_st<S>(p, i) + v : v);
}

// Plain-old-data copy of a conv problem for kernel arguments (output extents precomputed).
// ymap = 1 (dgrad v2's parity classes): GEMM output row m = (n, od, oh, ow) over (OD, OH, OW) is stored at voxel
// (n, ys0 od + yr0, ys1 oh + yr1, ys2 ow + yr2) of a (YD, YH, YW) tensor (v2::class_out_row); ymap = 0: row m.
struct ConvArgs {
  int N, C, K, D, H, W, OD, OH, OW, KD, KH, KW;
  int s0, s1, s2, p0, p1, p2, d0, d1, d2;
  int taps;
  int ymap, ys0, ys1, ys2, yr0, yr1, yr2, YD, YH, YW;
};

// The kernels' geometry of a conv problem: G is ConvArgs (remaining fields zero) or any struct with its first 22
// fields (the wgmma kernel's wg::Geom); P is Conv3dParams or ConvTranspose3dParams (dilation 1).
template <class G = ConvArgs, class P>
inline G conv_geom(const P& p) {
  G a{};
  a.N = p.N; a.C = p.C; a.K = p.K; a.D = p.D; a.H = p.H; a.W = p.W;
  a.OD = p.OD(); a.OH = p.OH(); a.OW = p.OW();
  a.KD = p.KD; a.KH = p.KH; a.KW = p.KW;
  a.s0 = p.stride[0]; a.s1 = p.stride[1]; a.s2 = p.stride[2];
  a.p0 = p.pad[0]; a.p1 = p.pad[1]; a.p2 = p.pad[2];
  if constexpr (std::is_same_v<P, Conv3dParams>) {
    a.d0 = p.dil[0]; a.d1 = p.dil[1]; a.d2 = p.dil[2];
  } else {
    a.d0 = a.d1 = a.d2 = 1;
  }
  a.taps = p.KD * p.KH * p.KW;
  return a;
}

}  // namespace dex
