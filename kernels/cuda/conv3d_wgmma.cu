// conv3d fprop v3: implicit GEMM on Hopper wgmma (sm_90a only), f16 / bf16 storage, fp32 accumulation.
// One variant, selectable next to v1 / v2 (conv3d.cu); conv3d_wgmma.h is its interface, conv3d_wgmma_layout.h holds
// every index map (tested on the CPU by tests/cuda/test_conv3d_wgmma_layout.cpp).
//   v3 Wgmma  CTA tile 128 output voxels x BN (256 | 128 | 64 | 32, the largest dividing K) x BK (64 | 32 channels of
//             one tap), 2 warpgroups (256 threads), each issuing wgmma.mma_async.m64nBNk16 (SS: A and B from shared
//             memory through matrix descriptors) on its 64 rows. Every thread gathers its share of the A tile
//             (implicit-GEMM im2col rows, cp.async with zero fill outside the volume) and of the B tile (KTRSC weight
//             rows) with 16-byte cp.async into 128B-swizzled (BK 64) or 64B-swizzled (BK 32) K-major tiles. 4-stage
//             ring: 2 k-steps in flight, 1 multiplied, 1 still read by the previous wgmma batch (wait_group 1).
//             Epilogue: fragments -> padded 16-bit staging tile in smem -> coalesced 16-byte stores (NDHWC).
//             Needs C % 32 == 0, K % 32 == 0, 16-byte aligned pointers, an sm_90 device.
// ptxas (nvcc 13.0, sm_90a, -Xptxas -v): registers BK32 x BN 32/64/128/256 = 65/84/122/208, BK64 = 88/116/168/254,
// no stack, no spills, no C7510 (wgmma serialisation) warning. Dynamic smem (wg::make_plan + 1 KB alignment slack):
// BK64 81/97/129/193 KB, BK32 41/49/65/97 KB; resident CTAs/SM (smem and registers, est.): BK64 2/2/1/1, BK32 3/2/2/1.
// Measured (H100, 2026-11-27, bench/results): exact on integer data; faster than v2 on 24 of the 26 DynUNet fprop
// layers at 128^3 (8.4 vs 9.5 ms in all), slower on the two 32 -> 32 ones, so Best takes it where C or K >= 64.
// Not yet: TMA / mbarrier producer warp, warp specialisation and setmaxnreg, persistent grid, the halo brick for
// narrow Cout (KERNELS.md §4.6), fused norm / stats. Each is a later variant measured against this one.
// Ordering: cp.async writes are generic-proxy writes and wgmma reads smem through the async proxy, so each thread
// runs fence.proxy.async.shared::cta after its cp.async group completes and before the barrier that publishes it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "kernels/cuda/conv3d_wgmma.h"
#include "kernels/cuda/conv3d_wgmma_layout.h"
#include "kernels/cuda/conv_common.cuh"
#include "kernels/cuda/cuda_runtime.h"

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "conv3d_wgmma.cu uses wgmma: build it for sm_90a only (CMake target dex_cuda_sm90a, CUDA_ARCHITECTURES 90a)"
#endif

namespace dex {
namespace {

using wg::kBM;
using wg::kThreads;

// ---- PTX wrappers ------------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(uint32_t saddr, const void* gmem, bool valid) {
  const int src_size = valid ? 16 : 0;  // 0: nothing read, 16 zero bytes written
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr), "l"(gmem), "r"(src_size) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accumulator reads / writes across the asynchronous wgmma window.
template <int N>
__device__ __forceinline__ void fence_operands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

template <bool kBf16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (kBf16) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

// wgmma.mma_async.sync.aligned.m64nNk16.f32.{f16,bf16}: D (N/2 fp32 per thread) += A (desc) x B (desc), both
// K-major (imm-trans-a = imm-trans-b = 0), scale-d = 1, no negation. Operand lists written out per N.
template <int N, bool kBf16>
struct Wgmma;
template <>
struct Wgmma<32, false> {
  static __device__ __forceinline__ void mma(float (&d)[16], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
        "}, %16, %17, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "l"(da), "l"(db), "r"(1));
  }
};
template <>
struct Wgmma<32, true> {
  static __device__ __forceinline__ void mma(float (&d)[16], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
        "}, %16, %17, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "l"(da), "l"(db), "r"(1));
  }
};
template <>
struct Wgmma<64, false> {
  static __device__ __forceinline__ void mma(float (&d)[32], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31])
        : "l"(da), "l"(db), "r"(1));
  }
};
template <>
struct Wgmma<64, true> {
  static __device__ __forceinline__ void mma(float (&d)[32], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31])
        : "l"(da), "l"(db), "r"(1));
  }
};
template <>
struct Wgmma<128, false> {
  static __device__ __forceinline__ void mma(float (&d)[64], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
          "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
          "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),
          "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
          "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(1));
  }
};
template <>
struct Wgmma<128, true> {
  static __device__ __forceinline__ void mma(float (&d)[64], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
          "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
          "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),
          "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
          "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(1));
  }
};
template <>
struct Wgmma<256, false> {
  static __device__ __forceinline__ void mma(float (&d)[128], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
        "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
          "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
          "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),
          "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
          "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]),
          "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]),
          "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]),
          "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]),
          "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]),
          "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]),
          "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]),
          "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]),
          "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(1));
  }
};
template <>
struct Wgmma<256, true> {
  static __device__ __forceinline__ void mma(float (&d)[128], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
        "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
          "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
          "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),
          "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
          "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]),
          "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]),
          "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]),
          "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]),
          "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]),
          "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]),
          "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]),
          "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]),
          "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(1));
  }
};

// ---- the kernel --------------------------------------------------------------------------------------------------
// Grid (ceil(M / 128), K / BN), 256 threads, dynamic smem wg::make_plan(BK, BN).smem_bytes.
template <bool kBf16, int BK, int BN>
__global__ void __launch_bounds__(kThreads, 1)
    conv3d_fprop_kernel_v3(wg::Geom g, const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                           uint16_t* __restrict__ y) {
  constexpr wg::Plan P = wg::make_plan(BK, BN);
  constexpr int kAR = wg::a_rows_per_thread(BK);
  constexpr int kBC = wg::b_copies_per_thread(BK, BN);
  constexpr int kBChunks = BN * (BK / 8);
  constexpr int kRB = P.row_bytes;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_addr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;  // swizzle atoms need 1024-byte alignment
  uint8_t* const smem = smem_raw + (base - raw);

  const int tid = threadIdx.x;
  const int wgi = tid >> 7;   // warpgroup: rows [64 wgi, 64 wgi + 64) of the CTA tile
  const int t = tid & 127;    // thread within the warpgroup
  const int64_t M = int64_t(g.N) * g.OD * g.OH * g.OW;
  const int64_t m_base = int64_t(blockIdx.x) * kBM;
  const int n_base = blockIdx.y * BN;
  const int KT = wg::ksteps(g, BK);

  wg::RowBase rows[kAR];
#pragma unroll
  for (int i = 0; i < kAR; ++i) rows[i] = wg::row_base(g, m_base + wg::a_row(tid, i, BK));
  const int a_chunk = wg::a_chunk(tid, BK);

  auto load_stage = [&](int slot, int kt) {
    int tap, c0;
    wg::kstep(kt, g.C, BK, &tap, &c0);
    const uint32_t sa = base + uint32_t(slot * P.stage_bytes);
    const uint32_t sb = sa + uint32_t(P.a_bytes);
#pragma unroll
    for (int i = 0; i < kAR; ++i) {
      const int64_t off = wg::a_src(g, rows[i], tap, c0 + a_chunk * 8);
      cp_async16(sa + wg::tile_offset(wg::a_row(tid, i, BK), a_chunk, kRB), off >= 0 ? x + off : x, off >= 0);
    }
#pragma unroll
    for (int j = 0; j < kBC; ++j) {
      const int idx = tid + j * kThreads;
      if (kBC * kThreads == kBChunks || idx < kBChunks) {
        const int row = wg::b_row(idx, BK), ch = wg::b_chunk(idx, BK);
        cp_async16(sb + wg::tile_offset(row, ch, kRB), w + wg::b_src(g, n_base + row, tap, c0 + ch * 8), true);
      }
    }
  };

  float acc[BN / 2];
#pragma unroll
  for (int j = 0; j < BN / 2; ++j) acc[j] = 0.f;
  fence_operands(acc);

#pragma unroll
  for (int s = 0; s < wg::kPrefetch; ++s) {
    if (s < KT) load_stage(wg::ring_slot(s), s);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<wg::kCpAsyncPending>();  // this thread's copies of k-step kt have landed ...
    fence_proxy_async_smem();      // ... are made visible to the async proxy (wgmma) ...
    __syncthreads();  // ... and everyone's are; every warpgroup's batches up to k-step kt-1-kWgmmaPending are done
    const int pre = kt + wg::kPrefetch;
    if (pre < KT) load_stage(wg::ring_slot(pre), pre);  // the slot of k-step kt-2, no longer read
    cp_async_commit();  // always (possibly empty), so the group count stays in step
    const uint32_t sa = base + uint32_t(wg::ring_slot(kt) * P.stage_bytes);
    const uint64_t da = wg::kmajor_desc(sa + uint32_t(wgi * wg::kWgM * kRB), kRB);
    const uint64_t db = wg::kmajor_desc(sa + uint32_t(P.a_bytes), kRB);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BK / wg::kWgmmaK; ++kk)
      Wgmma<BN, kBf16>::mma(acc, wg::desc_k_slice(da, kk), wg::desc_k_slice(db, kk));
    wgmma_commit();
    wgmma_wait<wg::kWgmmaPending>();  // k-step kt-1's batch is done: its slot may be refilled at kt+1
  }
  wgmma_wait<0>();
  fence_operands(acc);
  cp_async_wait<0>();
  __syncthreads();  // both warpgroups are done with the ring: reuse it as the staging tile

#pragma unroll
  for (int j = 0; j < BN / 2; j += 2) {
    const int row = wgi * wg::kWgM + wg::acc_row(t, j), col = wg::acc_col(t, j);
    *reinterpret_cast<uint32_t*>(smem + wg::staging_offset(row, col, P.out_stride)) = pack2<kBf16>(acc[j], acc[j + 1]);
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < wg::out_chunks_per_thread(BN); ++j) {
    const int idx = tid + j * kThreads;
    const int row = idx / (BN / 8), ch = idx % (BN / 8);
    const int64_t m = m_base + row;
    if (m < M)
      *reinterpret_cast<uint4*>(y + m * g.K + n_base + ch * 8) =
          *reinterpret_cast<const uint4*>(smem + wg::staging_offset(row, ch * 8, P.out_stride));
  }
}

// ---- host side -------------------------------------------------------------------------------------------------------

// The > 48 KB dynamic shared-memory opt-in, once per instantiation and device (a synchronous host call: kept out of
// the per-launch path so that small layers' timings do not include it).
template <class Kernel>
void opt_in_smem(Kernel* kernel, int bytes, int dev, std::atomic<uint64_t>& done) {
  const uint64_t bit = dev < 64 ? uint64_t(1) << dev : 0;
  if (bit && (done.load() & bit)) return;
  DEX_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  done.fetch_or(bit);
}

template <bool kBf16, int BK, int BN>
void launch(const wg::Geom& g, int64_t M, const void* x, const void* w, void* y, int dev, cudaStream_t stream) {
  constexpr wg::Plan P = wg::make_plan(BK, BN);
  auto* kernel = conv3d_fprop_kernel_v3<kBf16, BK, BN>;
  static std::atomic<uint64_t> smem_done{0};
  opt_in_smem(kernel, P.smem_bytes, dev, smem_done);
  const dim3 grid(static_cast<unsigned>((M + kBM - 1) / kBM), static_cast<unsigned>(g.K / BN));
  kernel<<<grid, kThreads, P.smem_bytes, stream>>>(g, static_cast<const uint16_t*>(x), static_cast<const uint16_t*>(w),
                                                    static_cast<uint16_t*>(y));
  DEX_LAUNCH_CHECK("conv3d_fprop_kernel_v3", stream);
}

template <bool kBf16, int BK>
void launch_bn(const wg::Geom& g, int64_t M, const void* x, const void* w, void* y, int dev, cudaStream_t stream) {
  switch (wg::pick_bn(g.K)) {
    case 256: launch<kBf16, BK, 256>(g, M, x, w, y, dev, stream); break;
    case 128: launch<kBf16, BK, 128>(g, M, x, w, y, dev, stream); break;
    case 64: launch<kBf16, BK, 64>(g, M, x, w, y, dev, stream); break;
    default: launch<kBf16, BK, 32>(g, M, x, w, y, dev, stream); break;
  }
}

template <bool kBf16>
void launch_bk(const wg::Geom& g, int64_t M, const void* x, const void* w, void* y, int dev, cudaStream_t stream) {
  if (wg::pick_bk(g.C) == 64) launch_bn<kBf16, 64>(g, M, x, w, y, dev, stream);
  else launch_bn<kBf16, 32>(g, M, x, w, y, dev, stream);
}

}  // namespace

bool conv3d_fprop_wgmma_supports(const Conv3dParams& p, DType dtype, std::string* why) {
  auto no = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  if (dtype != DType::F16 && dtype != DType::BF16)
    return no(str("v3 (wgmma) needs f16 or bf16 storage, got ", dtype_name(dtype)));
  if (p.C % 32 != 0) return no(str("v3 (wgmma) needs C % 32 == 0, got C = ", p.C));
  if (p.K % 32 != 0) return no(str("v3 (wgmma) needs K % 32 == 0, got K = ", p.K));
  if (p.out_voxels() <= 0) return no("v3 (wgmma): empty output");
  if ((p.out_voxels() + kBM - 1) / kBM > 2147483647LL) return no("v3 (wgmma): too many output voxels for the grid");
  return true;
}

void conv3d_fprop_wgmma(const Conv3dParams& p, DType dtype, const void* x, const void* w, void* y,
                        cudaStream_t stream) {
  p.validate();
  std::string why;
  DEX_CHECK(conv3d_fprop_wgmma_supports(p, dtype, &why), "conv3d_fprop_wgmma: ", why);
  DEX_CHECK(aligned16(x) && aligned16(w) && aligned16(y), "conv3d_fprop_wgmma: x, w and y must be 16-byte aligned");
  int dev = 0;
  DEX_CUDA_CHECK(cudaGetDevice(&dev));
  const int cc = device_compute_capability(dev);
  DEX_CHECK(cc == 90, "conv3d_fprop_wgmma: needs an sm_90 device (H100 / H200; the kernel is built for sm_90a), "
            "device ", dev, " is sm_", cc);
  const wg::Geom g = conv_geom<wg::Geom>(p);
  if (dtype == DType::BF16) launch_bk<true>(g, p.out_voxels(), x, w, y, dev, stream);
  else launch_bk<false>(g, p.out_voxels(), x, w, y, dev, stream);
}

}  // namespace dex
