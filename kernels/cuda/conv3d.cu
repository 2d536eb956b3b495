// CUDA 3D convolution (kernels/conv3d.h): NDHWC activations, KTRSC weights, fp32 accumulation.
// Variants (STYLE.md §1), side by side in this file:
//   v1 Direct  fprop/dgrad/wgrad, fp32 | f16 | bf16 storage: one thread per output voxel x 8 channels (fprop, dgrad);
//              wgrad one (32-channel x 8-slice) block per (k, tap, channel chunk), fixed-order column sums. Any shape.
//   v2 Mma     fprop, f16 | bf16: implicit GEMM (M = output voxels, N = K, K-dim = taps x C, tap-major), CTA tile
//              128 x {64 | 32} x 32, 4 warps of 32 x BN, mma.sync.m16n8k16 (fp32 accumulate), 3-stage cp.async ring
//              (zero-fill outside the volume), ldmatrix from an XOR-swizzled smem layout. Needs C % 32 == 0,
//              K % 32 == 0 and 16-byte aligned pointers (KERNELS.md §3).
//              dgrad, strides 1 and 2 per axis: one such GEMM over dy per output parity class (stride 1: one class,
//              the flipped-weight identity), weights repacked per class into a workspace, a scattering epilogue
//              (conv3d_v2_layout.h: DgradPlan, class_out_row); GradMode::Accumulate adds in the epilogue.
//              wgrad: conv3d_wgrad_kernel_v2, M = taps x C (128 rows), N = K (32 | 64), reduction over output voxels
//              (32 per k-step) with both tiles read by ldmatrix.trans; the voxels are cut into a fixed number of
//              splits (v2::wgrad_split), each CTA writes an fp32 partial tile to the workspace and
//              conv3d_wgrad_reduce_kernel adds the splits in ascending order (deterministic, no atomics).
//              Transposed conv (kernel == stride) fprop, dgrad (a conv3d fprop of dy with kernel = stride) and
//              wgrad (a conv3d wgrad with the roles of x and dy swapped) run on the same two kernels.
//   v1s        wgrad for small weights (K x taps x C <= 4096: the C = 3 input convs, the K = 2 head): split voxels,
//              shared-memory tiles, an ordered reduction of the splits (conv3d_wgrad_small_kernel). Best, with the
//              workspace of conv3d_wgrad_cuda_workspace_bytes, where v2 does not apply.
//   Best       fprop: v3 (wgmma, conv3d_wgmma.cu) on an sm_90 device where conv3d_fprop_best_is_wgmma() says so
//              (measured faster there on an H100), else v2 where it applies (and, for dgrad / wgrad, a workspace
//              is given), else v1.
// Index math: every voxel offset is formed in 64 bits from per-row bases (KERNELS.md §2, "Index width").
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>
#include <type_traits>

#include "kernels/cuda/conv3d_v2_layout.h"
#include "kernels/cuda/conv3d_wgmma.h"
#include "kernels/cuda/conv_common.cuh"
#include "kernels/cuda/mma_sync.cuh"
#include "kernels/cuda/v2_fragments.cuh"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {

const char* conv_variant_name(ConvVariant v) {
  switch (v) {
    case ConvVariant::Best: return "best";
    case ConvVariant::Direct: return "v1";
    case ConvVariant::Mma: return "v2";
    case ConvVariant::Wgmma: return "v3";
  }
  return "?";
}

namespace {

constexpr int kG = 8;  // output channels per thread in the direct kernels

// ==== v1 direct ==========================================================================================
// fprop: thread = (output voxel m, channel group kg of 8). y[m][k] = sum_tap sum_c x[in(m, tap)][c] * w[k][tap][c].
template <St S>
__global__ void conv3d_fprop_kernel_v1(ConvArgs a, const void* x, const void* w, void* y) {
  const int KG = (a.K + kG - 1) / kG;
  const int64_t M = int64_t(a.N) * a.OD * a.OH * a.OW;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < M * KG;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = idx / KG;
    const int k0 = static_cast<int>(idx - m * KG) * kG;
    int64_t r = m;
    const int ow = static_cast<int>(r % a.OW); r /= a.OW;
    const int oh = static_cast<int>(r % a.OH); r /= a.OH;
    const int od = static_cast<int>(r % a.OD);
    const int n = static_cast<int>(r / a.OD);
    float acc[kG];
    for (int j = 0; j < kG; ++j) acc[j] = 0.f;
    for (int t = 0; t < a.KD; ++t) {
      const int iz = od * a.s0 - a.p0 + t * a.d0;
      if (iz < 0 || iz >= a.D) continue;
      for (int rr = 0; rr < a.KH; ++rr) {
        const int iy = oh * a.s1 - a.p1 + rr * a.d1;
        if (iy < 0 || iy >= a.H) continue;
        for (int s = 0; s < a.KW; ++s) {
          const int ix = ow * a.s2 - a.p2 + s * a.d2;
          if (ix < 0 || ix >= a.W) continue;
          const int tap = (t * a.KH + rr) * a.KW + s;
          const int64_t xo = (((int64_t(n) * a.D + iz) * a.H + iy) * a.W + ix) * a.C;
          for (int c = 0; c < a.C; ++c) {
            const float xv = ld_st<S>(x, xo + c);
#pragma unroll
            for (int j = 0; j < kG; ++j)
              if (k0 + j < a.K) acc[j] += xv * ld_st<S>(w, (int64_t(k0 + j) * a.taps + tap) * a.C + c);
          }
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kG; ++j)
      if (k0 + j < a.K) st_st<S>(y, m * a.K + k0 + j, acc[j]);
  }
}

// dgrad: thread = (input voxel, channel group of 8). dx[i][c] = sum over (tap, o) with o*s - p + tap*d = i of
// sum_k dy[o][k] * w[k][tap][c]. A tap contributes only where (i + p - tap*d) divides by the stride.
template <St S>
__global__ void conv3d_dgrad_kernel_v1(ConvArgs a, const void* dy, const void* w, void* dx, bool accumulate) {
  const int CG = (a.C + kG - 1) / kG;
  const int64_t V = int64_t(a.N) * a.D * a.H * a.W;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < V * CG;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = idx / CG;
    const int c0 = static_cast<int>(idx - v * CG) * kG;
    int64_t r = v;
    const int ix = static_cast<int>(r % a.W); r /= a.W;
    const int iy = static_cast<int>(r % a.H); r /= a.H;
    const int iz = static_cast<int>(r % a.D);
    const int n = static_cast<int>(r / a.D);
    float acc[kG];
    for (int j = 0; j < kG; ++j) acc[j] = 0.f;
    for (int t = 0; t < a.KD; ++t) {
      const int zz = iz + a.p0 - t * a.d0;
      if (zz < 0 || zz % a.s0 != 0 || zz / a.s0 >= a.OD) continue;
      const int od = zz / a.s0;
      for (int rr = 0; rr < a.KH; ++rr) {
        const int yy = iy + a.p1 - rr * a.d1;
        if (yy < 0 || yy % a.s1 != 0 || yy / a.s1 >= a.OH) continue;
        const int oh = yy / a.s1;
        for (int s = 0; s < a.KW; ++s) {
          const int xx = ix + a.p2 - s * a.d2;
          if (xx < 0 || xx % a.s2 != 0 || xx / a.s2 >= a.OW) continue;
          const int ow = xx / a.s2;
          const int tap = (t * a.KH + rr) * a.KW + s;
          const int64_t oo = (((int64_t(n) * a.OD + od) * a.OH + oh) * a.OW + ow) * a.K;
          for (int k = 0; k < a.K; ++k) {
            const float g = ld_st<S>(dy, oo + k);
            const int64_t wo = (int64_t(k) * a.taps + tap) * a.C + c0;
#pragma unroll
            for (int j = 0; j < kG; ++j)
              if (c0 + j < a.C) acc[j] += g * ld_st<S>(w, wo + j);
          }
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kG; ++j)
      if (c0 + j < a.C) st_grad<S>(dx, v * a.C + c0 + j, acc[j], accumulate);
  }
}

// wgrad: block (32 channel lanes, kWBY voxel slices) per (k, tap, 32-channel chunk): dw[k][tap][c] = sum over output
// voxels o of dy[o][k] * x[in(o, tap)][c]. Each thread sums a strided slice of voxels; the slices are then added in
// ascending order (column_sum), so the result does not depend on scheduling. dw is fp32 for every storage type.
constexpr int kWBY = 8;
template <St S>
__global__ void conv3d_wgrad_kernel_v1(ConvArgs a, const void* x, const void* dy, float* dw, bool accumulate) {
  __shared__ double red[32 * kWBY];
  const int CC = (a.C + 31) / 32;
  const int c = (blockIdx.x % CC) * 32 + threadIdx.x;
  const int tap = static_cast<int>((blockIdx.x / CC) % a.taps);
  const int k = static_cast<int>(blockIdx.x / (int64_t(CC) * a.taps));
  const int t = tap / (a.KH * a.KW), rr = (tap / a.KW) % a.KH, s = tap % a.KW;
  const int64_t M = int64_t(a.N) * a.OD * a.OH * a.OW;
  float acc = 0.f;
  if (c < a.C) {
    for (int64_t m = threadIdx.y; m < M; m += kWBY) {
      int64_t r = m;
      const int ow = static_cast<int>(r % a.OW); r /= a.OW;
      const int oh = static_cast<int>(r % a.OH); r /= a.OH;
      const int od = static_cast<int>(r % a.OD);
      const int n = static_cast<int>(r / a.OD);
      const int iz = od * a.s0 - a.p0 + t * a.d0, iy = oh * a.s1 - a.p1 + rr * a.d1, ix = ow * a.s2 - a.p2 + s * a.d2;
      if (iz < 0 || iz >= a.D || iy < 0 || iy >= a.H || ix < 0 || ix >= a.W) continue;
      const int64_t xo = (((int64_t(n) * a.D + iz) * a.H + iy) * a.W + ix) * a.C + c;
      acc += ld_st<S>(dy, m * a.K + k) * ld_st<S>(x, xo);
    }
  }
  const double sum = column_sum<kWBY>(double(acc), red);
  if (c < a.C && threadIdx.y == 0) {
    const int64_t o = (int64_t(k) * a.taps + tap) * a.C + c;
    dw[o] = accumulate ? dw[o] + static_cast<float>(sum) : static_cast<float>(sum);
  }
}

// wgrad for small weights (v1s: the C = 3 input convs and the K = 2 head, which v2 cannot take): the output voxels
// are cut into a fixed number of splits (a function of the problem only); a block takes one split, stages kWsV voxels
// at a time in shared memory (dy[v][k] and the gathered x[in(v, tap)][c], zero outside), and each thread keeps up to
// kWsAcc of the K x taps x C weights in registers (fp32, exact on small integers). conv3d_wgrad_small_reduce_kernel
// adds the splits' partials in ascending order in double: deterministic, no atomics. Measured need: v1 took 806 of a
// 928 ms AMP training step at 128^3 on an H100 for these three layers (one block per weight chunk over 2M voxels).
constexpr int kWsV = 16;             // voxels per shared-memory tile
constexpr int kWsRow = 512;          // K + taps x C must fit (floats per staged voxel)
constexpr int kWsThreads = 256;
constexpr int kWsAcc = 16;           // weights per thread: K x taps x C <= 4096
constexpr int64_t kWsChunk = 4096;   // output voxels per split, up to kWsMaxSplits splits
constexpr int64_t kWsMaxSplits = 1024;

template <St S>
__global__ void __launch_bounds__(kWsThreads) conv3d_wgrad_small_kernel(ConvArgs a, int64_t chunk, const void* x,
                                                                        const void* dy, float* part) {
  __shared__ float sm[kWsV * kWsRow];
  const int TC = a.taps * a.C, J = a.K * TC;
  float* dys = sm;                  // [kWsV][K]
  float* xs = sm + kWsV * a.K;      // [kWsV][taps x C]
  const int64_t M = int64_t(a.N) * a.OD * a.OH * a.OW;
  const int64_t b = int64_t(blockIdx.x) * chunk, e = b + chunk < M ? b + chunk : M;
  float acc[kWsAcc];
#pragma unroll
  for (int q = 0; q < kWsAcc; ++q) acc[q] = 0.f;
  for (int64_t m0 = b; m0 < e; m0 += kWsV) {
    const int nv = e - m0 < kWsV ? static_cast<int>(e - m0) : kWsV;
    __syncthreads();  // the previous tile is consumed
    for (int i = threadIdx.x; i < kWsV * a.K; i += kWsThreads) {
      const int v = i / a.K;
      dys[i] = v < nv ? ld_st<S>(dy, (m0 + v) * a.K + (i - v * a.K)) : 0.f;
    }
    for (int i = threadIdx.x; i < kWsV * TC; i += kWsThreads) {
      const int v = i / TC, r = i - v * TC;
      float val = 0.f;
      if (v < nv) {
        int64_t mm = m0 + v;
        const int ow = static_cast<int>(mm % a.OW); mm /= a.OW;
        const int oh = static_cast<int>(mm % a.OH); mm /= a.OH;
        const int od = static_cast<int>(mm % a.OD);
        const int n = static_cast<int>(mm / a.OD);
        const int tap = r / a.C, c = r - tap * a.C;
        const int t = tap / (a.KH * a.KW), rr = (tap / a.KW) % a.KH, ss = tap % a.KW;
        const int iz = od * a.s0 - a.p0 + t * a.d0, iy = oh * a.s1 - a.p1 + rr * a.d1, ix = ow * a.s2 - a.p2 + ss * a.d2;
        if (iz >= 0 && iz < a.D && iy >= 0 && iy < a.H && ix >= 0 && ix < a.W)
          val = ld_st<S>(x, (((int64_t(n) * a.D + iz) * a.H + iy) * a.W + ix) * a.C + c);
      }
      xs[i] = val;
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < kWsAcc; ++q) {
      const int j = threadIdx.x + q * kWsThreads;
      if (j < J) {
        const int k = j / TC, r = j - k * TC;
        float sum = acc[q];
        for (int v = 0; v < kWsV; ++v) sum = fmaf(dys[v * a.K + k], xs[v * TC + r], sum);
        acc[q] = sum;
      }
    }
  }
#pragma unroll
  for (int q = 0; q < kWsAcc; ++q) {
    const int j = threadIdx.x + q * kWsThreads;
    if (j < J) part[int64_t(blockIdx.x) * J + j] = acc[q];
  }
}

__global__ void conv3d_wgrad_small_reduce_kernel(int J, int splits, const float* part, float* dw, bool accumulate) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= J) return;
  double sum = 0;
  for (int k = 0; k < splits; ++k) sum += part[int64_t(k) * J + j];
  dw[j] = accumulate ? dw[j] + static_cast<float>(sum) : static_cast<float>(sum);
}

// dgrad v2 weight repack: w[k][tap][c] goes to its parity class's w'_cls[c][u][k] (conv3d_v2_layout.h, DgradPlan);
// the classes partition the taps, so the workspace holds exactly K x taps x C 16-bit values.
__global__ void conv3d_dgrad_repack_kernel(v2::DgradPlan q, int C, int K, int taps, const uint16_t* w, uint16_t* wt) {
  const int64_t n = int64_t(C) * taps * K;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>(i % C);
    const int tap = static_cast<int>((i / C) % taps);
    const int k = static_cast<int>(i / (int64_t(C) * taps));
    wt[v2::dgrad_repack_dst(q, k, tap, c, K)] = w[i];
  }
}

// Transposed-conv dgrad repack: w'[c][tap][k] = w[k][tap][c] (v2::convt_dgrad_weight_src).
__global__ void conv_transpose3d_dgrad_repack_kernel(int C, int K, int taps, const uint16_t* w, uint16_t* wt) {
  const int64_t n = int64_t(C) * taps * K;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int k = static_cast<int>(i % K);
    const int tap = static_cast<int>((i / K) % taps);
    const int c = static_cast<int>(i / (int64_t(K) * taps));
    wt[i] = w[v2::convt_dgrad_weight_src(c, tap, k, C, taps)];
  }
}

// ==== v2 mma.sync implicit GEMM (fprop, f16/bf16) ========================================================
// Index maps live in conv3d_v2_layout.h (shared with the CPU emulation test).
using v2::kBM;
using v2::kBK;
using v2::kStages;
constexpr int kV2Threads = v2::kThreads;

using namespace mma_sync;  // cp.async, ldmatrix, mma.sync m16n8k16 (kernels/cuda/mma_sync.cuh)

template <bool kBf16>
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
  if constexpr (kBf16) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&v);
  }
}

template <bool kBf16>
__device__ __forceinline__ float2 unpack2(unsigned v) {
  if constexpr (kBf16) {
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&v));
  } else {
    return __half22float2(*reinterpret_cast<__half2*>(&v));
  }
}

// Grid (ceil(M/128), K/BN). Thread tid loads A chunk (tid & 3) of rows (tid >> 2) + 32 i, i < 4, and B chunks
// tid + 128 j of the BN x 4 chunk tile. k-step kt covers tap kt / (C/32), channels [(kt % (C/32)) * 32, +32).
// kTrans: the transposed conv with kernel == stride as one GEMM (conv3d_v2_layout.h, convt_out_index): M = input
// voxels, N = K x taps, K-dim = C, no gather, scattering epilogue (a.taps is the real tap count, the GEMM has 1).
// accumulate: y += result (fp32 add of the stored value, then rounded), for dgrad with GradMode::Accumulate.
// kYMap: dgrad's parity classes (ConvArgs::ymap; a separate instantiation so the fprop epilogue keeps its registers).
template <bool kBf16, int BN, bool kTrans, bool kYMap>
__global__ void __launch_bounds__(kV2Threads) conv3d_fprop_kernel_v2(ConvArgs a, const uint16_t* __restrict__ x,
                                                                     const uint16_t* __restrict__ w,
                                                                     uint16_t* __restrict__ y, bool accumulate) {
  static_assert(BN == 32 || BN == 64, "BN is 32 or 64");
  constexpr int kNT = BN / 8;  // n8 tiles per warp
  __shared__ __align__(128) uint16_t sA[kStages][kBM * kBK];
  __shared__ __align__(128) uint16_t sB[kStages][BN * kBK];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t M = kTrans ? int64_t(a.N) * a.D * a.H * a.W : int64_t(a.N) * a.OD * a.OH * a.OW;
  const int64_t m_base = int64_t(blockIdx.x) * kBM;
  const int n_base = blockIdx.y * BN;
  const int CC = a.C / kBK;
  const int KT = (kTrans ? 1 : a.taps) * CC;

  // Per-row gather state for this thread's 4 A rows: sample, first input coordinate of tap (0,0,0), validity.
  int rn[4], rz[4], ry[4], rx[4];
  bool rv[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m_base + v2::a_row(tid, i);
    rv[i] = m < M;
    int64_t r = rv[i] ? m : 0;
    const int ow = static_cast<int>(r % a.OW); r /= a.OW;
    const int oh = static_cast<int>(r % a.OH); r /= a.OH;
    const int od = static_cast<int>(r % a.OD);
    rn[i] = static_cast<int>(r / a.OD);
    rz[i] = od * a.s0 - a.p0;
    ry[i] = oh * a.s1 - a.p1;
    rx[i] = ow * a.s2 - a.p2;
  }
  const int a_chunk = v2::a_chunk(tid);

  auto load_stage = [&](int stage, int kt) {
    int tap, c0;
    v2::kstep(kt, a.C, &tap, &c0);
    const int t = tap / (a.KH * a.KW), rr = (tap / a.KW) % a.KH, s = tap % a.KW;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = v2::a_row(tid, i);
      if constexpr (kTrans) {
        const uint16_t* src = rv[i] ? x + ((m_base + row) * a.C + c0 + a_chunk * 8) : x;
        cp_async16(&sA[stage][v2::swz(row, a_chunk)], src, rv[i]);
      } else {
        const int iz = rz[i] + t * a.d0, iy = ry[i] + rr * a.d1, ix = rx[i] + s * a.d2;
        const bool ok = rv[i] && iz >= 0 && iz < a.D && iy >= 0 && iy < a.H && ix >= 0 && ix < a.W;
        const uint16_t* src =
            ok ? x + ((((int64_t(rn[i]) * a.D + iz) * a.H + iy) * a.W + ix) * a.C + c0 + a_chunk * 8) : x;
        cp_async16(&sA[stage][v2::swz(row, a_chunk)], src, ok);
      }
    }
#pragma unroll
    for (int j = 0; j < BN / 32; ++j) {
      const int idx = tid + kV2Threads * j;
      const int row = v2::b_row(idx), chunk = v2::b_chunk(idx);
      const int64_t wrow = kTrans ? int64_t(n_base + row) : int64_t(n_base + row) * a.taps + tap;
      const uint16_t* src = w + (wrow * a.C + c0 + chunk * 8);
      cp_async16(&sB[stage][v2::swz(row, chunk)], src, true);
    }
  };

  float acc[2][kNT][4];
  v2::zero_tile<kNT>(acc);
  v2::prime_stages(load_stage, KT);

  const int warp_m = warp * 32;
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<kStages - 2>();  // stage kt has landed (for this thread) ...
    __syncthreads();               // ... and for all threads; everyone is done with stage kt-1
    const int pre = kt + kStages - 1;
    if (pre < KT) load_stage(pre % kStages, pre);
    cp_async_commit();  // always commit (possibly empty) so the group count stays in step
    const uint16_t* tA = sA[kt % kStages];
    const uint16_t* tB = sB[kt % kStages];
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      unsigned af[2][4];
      v2::load_a_frags(af, tA, warp_m, lane, kk);
      unsigned bf[kNT][2];
      v2::load_b_frags<kNT>(bf, tB, lane, kk);
      v2::mma_tile<kBf16, kNT>(acc, af, bf);
    }
  }
  cp_async_wait<0>();

  // Epilogue: accumulator fragment (row g / g+8, columns 2t, 2t+1) -> two packed 16-bit values per store; the
  // transposed GEMM scatters each element to its output voxel instead.
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t m = m_base + v2::acc_row(warp_m, mi, lane, half * 2);
      if (m >= M) continue;
      int64_t yrow = m;
      if constexpr (kYMap)
        yrow = v2::class_out_row(m, a.OD, a.OH, a.OW, a.YD, a.YH, a.YW, a.ys0, a.ys1, a.ys2, a.yr0, a.yr1, a.yr2);
#pragma unroll
      for (int ni = 0; ni < kNT; ++ni) {
        const int col = n_base + v2::acc_col(ni, lane, half * 2);
        const unsigned packed = pack2<kBf16>(acc[mi][ni][half * 2], acc[mi][ni][half * 2 + 1]);
        if constexpr (kTrans) {
          y[v2::convt_out_index(m, col, a.D, a.H, a.W, a.KD, a.KH, a.KW, a.K)] = uint16_t(packed & 0xFFFFu);
          y[v2::convt_out_index(m, col + 1, a.D, a.H, a.W, a.KD, a.KH, a.KW, a.K)] = uint16_t(packed >> 16);
        } else if (accumulate) {
          unsigned* dst = reinterpret_cast<unsigned*>(y + yrow * a.K + col);
          const float2 old = unpack2<kBf16>(*dst);
          *dst = pack2<kBf16>(old.x + acc[mi][ni][half * 2], old.y + acc[mi][ni][half * 2 + 1]);
        } else {
          *reinterpret_cast<unsigned*>(y + yrow * a.K + col) = packed;
        }
      }
    }
  }
}

// ==== v2 wgrad (f16/bf16 operands, fp32 dW) ================================================================
// GEMM D[m][n] = sum_v x[in(v, tap)][c] dy[v][k], m = (tap, c), n = k (conv3d_v2_layout.h, "wgrad v2"). Grid
// (ceil(taps C / 128), K / BN, splits): CTA z reduces voxels [z chunk, min(L, (z + 1) chunk)) in k-steps of 32
// and stores its fp32 tile to part[z][n][m]. Thread tid's A columns are one fixed (tap, 32 channels) group of one
// voxel row, so it decodes one voxel (three fast divisions) per k-step. Same 3-stage cp.async ring as fprop.
template <bool kBf16, int BN>
__global__ void __launch_bounds__(kV2Threads)
    conv3d_wgrad_kernel_v2(ConvArgs a, v2::FastDiv f_ow, v2::FastDiv f_oh, v2::FastDiv f_od, int64_t chunk,
                           const uint16_t* __restrict__ x, const uint16_t* __restrict__ dy, float* __restrict__ part) {
  static_assert(BN == 32 || BN == 64, "BN is 32 or 64");
  constexpr int kNT = BN / 8;      // n8 tiles per warp
  constexpr int kBChunks = BN / 8;  // 16-byte chunks per B row
  using v2::kWgBM;
  using v2::kWgBV;
  __shared__ __align__(128) uint16_t sA[kStages][kWgBV * kWgBM];
  __shared__ __align__(128) uint16_t sB[kStages][kWgBV * BN];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int Mtot = a.taps * a.C;
  const int m_base = blockIdx.x * kWgBM;
  const int n_base = blockIdx.y * BN;
  const int64_t L = int64_t(a.N) * a.OD * a.OH * a.OW;
  const int64_t v_lo = int64_t(blockIdx.z) * chunk;
  const int64_t v_hi = v_lo + chunk < L ? v_lo + chunk : L;
  const int KT = static_cast<int>((v_hi - v_lo + kWgBV - 1) / kWgBV);

  // This thread's A columns: 32 channels of one tap (4 chunks), fixed for the whole kernel (C % 32 == 0).
  const int arow = v2::wg_a_row(tid);
  const int acol = m_base + v2::wg_a_chunk(tid, 0) * 8;
  const bool acol_ok = acol < Mtot;
  const int atap = acol_ok ? acol / a.C : 0;
  const int ac = acol_ok ? acol - atap * a.C : 0;
  const int oz = (atap / (a.KH * a.KW)) * a.d0 - a.p0;
  const int oy = ((atap / a.KW) % a.KH) * a.d1 - a.p1;
  const int ox = (atap % a.KW) * a.d2 - a.p2;

  auto load_stage = [&](int stage, int kt) {
    const int64_t v0 = v_lo + int64_t(kt) * kWgBV;
    {
      const int64_t v = v0 + arow;
      bool ok = acol_ok && v < v_hi;
      const uint16_t* src = x;
      if (ok) {
        const uint32_t vv = static_cast<uint32_t>(v);  // L < 2^31 (wgrad_v2_supports)
        const uint32_t q1 = v2::fdiv(vv, f_ow);
        const uint32_t q2 = v2::fdiv(q1, f_oh);
        const uint32_t q3 = v2::fdiv(q2, f_od);
        const int ow = static_cast<int>(vv - q1 * uint32_t(a.OW));
        const int oh = static_cast<int>(q1 - q2 * uint32_t(a.OH));
        const int od = static_cast<int>(q2 - q3 * uint32_t(a.OD));
        const int iz = od * a.s0 + oz, iy = oh * a.s1 + oy, ix = ow * a.s2 + ox;
        ok = iz >= 0 && iz < a.D && iy >= 0 && iy < a.H && ix >= 0 && ix < a.W;
        if (ok) src = x + ((((int64_t(q3) * a.D + iz) * a.H + iy) * a.W + ix) * a.C + ac);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j)
        cp_async16(&sA[stage][v2::swz_rows(arow, v2::wg_a_chunk(tid, j), 16)], ok ? src + 8 * j : src, ok);
    }
#pragma unroll
    for (int j = 0; j < BN / 32; ++j) {
      const int idx = tid + kV2Threads * j;
      const int row = v2::wg_b_row(idx, BN), ch = v2::wg_b_chunk(idx, BN);
      const int64_t v = v0 + row;
      const bool ok = v < v_hi;
      const uint16_t* src = ok ? dy + (v * a.K + n_base + ch * 8) : dy;
      cp_async16(&sB[stage][v2::swz_rows(row, ch, kBChunks)], src, ok);
    }
  };

  float acc[2][kNT][4];
  v2::zero_tile<kNT>(acc);
  v2::prime_stages(load_stage, KT);

  const int warp_m = warp * 32;
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int pre = kt + kStages - 1;
    if (pre < KT) load_stage(pre % kStages, pre);
    cp_async_commit();
    const uint16_t* tA = sA[kt % kStages];
    const uint16_t* tB = sB[kt % kStages];
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      unsigned af[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
        ldmatrix_x4_trans(af[mi], &tA[v2::swz_rows(v2::wg_lda_row(kk, lane), v2::wg_lda_chunk(warp_m, mi, lane), 16)]);
      unsigned bf[kNT][2];
#pragma unroll
      for (int nj = 0; nj < kNT / 2; ++nj) {
        unsigned r[4];
        ldmatrix_x4_trans(r, &tB[v2::swz_rows(v2::wg_ldb_row(kk, lane), v2::wg_ldb_chunk(nj, lane), kBChunks)]);
        bf[2 * nj][0] = r[0];
        bf[2 * nj][1] = r[1];
        bf[2 * nj + 1][0] = r[2];
        bf[2 * nj + 1][1] = r[3];
      }
      v2::mma_tile<kBf16, kNT>(acc, af, bf);
    }
  }
  cp_async_wait<0>();

  // Epilogue: fp32 partial tile, element (row m, column n) to part[z][n][m] (the dW layout [k][tap][c]).
  float* out = part + int64_t(blockIdx.z) * a.K * Mtot;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int m = m_base + v2::acc_row(warp_m, mi, lane, q);
      if (m >= Mtot) continue;
#pragma unroll
      for (int ni = 0; ni < kNT; ++ni) out[int64_t(n_base + v2::acc_col(ni, lane, q)) * Mtot + m] = acc[mi][ni][q];
    }
}

// Second pass of wgrad v2: dw[wgrad_dst(i)] (=|+=) sum over splits s = 0, 1, ... of part[s][i], in that order (double
// sum of fp32 partials, rounded once). N = GEMM columns, taps, Cm = C of the GEMM's (tap, c) rows.
__global__ void conv3d_wgrad_reduce_kernel(int64_t W, int splits, int N, int taps, int Cm, bool transposed,
                                           const float* __restrict__ part, float* __restrict__ dw, bool accumulate) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < W; i += int64_t(gridDim.x) * blockDim.x) {
    double s = 0;
    for (int sp = 0; sp < splits; ++sp) s += part[int64_t(sp) * W + i];
    const int64_t o = v2::wgrad_dst(i, N, taps, Cm, transposed);
    dw[o] = accumulate ? dw[o] + static_cast<float>(s) : static_cast<float>(s);
  }
}

// ==== host side ============================================================================================

bool v2_supports(const Conv3dParams& p, DType dtype, std::string* why) {
  auto no = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  if (dtype != DType::F16 && dtype != DType::BF16) return no(str("v2 needs f16 or bf16 storage, got ", dtype_name(dtype)));
  if (p.C % kBK != 0) return no(str("v2 needs C % 32 == 0, got C = ", p.C));
  if (p.K % 32 != 0) return no(str("v2 needs K % 32 == 0, got K = ", p.K));
  if (p.out_voxels() / kBM + 1 > 2147483647LL) return no("v2: too many output voxels for the grid");
  return true;
}

void launch_fprop_v1(const Conv3dParams& p, St s, const void* x, const void* w, void* y, cudaStream_t stream) {
  const ConvArgs a = conv_geom(p);
  const int64_t work = p.out_voxels() * ((p.K + kG - 1) / kG);
  const unsigned blocks = grid_1d(work, 128);
  switch (s) {
    case St::F32: conv3d_fprop_kernel_v1<St::F32><<<blocks, 128, 0, stream>>>(a, x, w, y); break;
    case St::F16: conv3d_fprop_kernel_v1<St::F16><<<blocks, 128, 0, stream>>>(a, x, w, y); break;
    case St::BF16: conv3d_fprop_kernel_v1<St::BF16><<<blocks, 128, 0, stream>>>(a, x, w, y); break;
  }
  DEX_LAUNCH_CHECK("conv3d_fprop_kernel_v1", stream);
}

void launch_dgrad_v1(const Conv3dParams& p, St s, const void* dy, const void* w, void* dx, bool acc,
                     cudaStream_t stream) {
  const ConvArgs a = conv_geom(p);
  const int64_t work = p.in_elems() / p.C * ((p.C + kG - 1) / kG);
  const unsigned blocks = grid_1d(work, 128);
  switch (s) {
    case St::F32: conv3d_dgrad_kernel_v1<St::F32><<<blocks, 128, 0, stream>>>(a, dy, w, dx, acc); break;
    case St::F16: conv3d_dgrad_kernel_v1<St::F16><<<blocks, 128, 0, stream>>>(a, dy, w, dx, acc); break;
    case St::BF16: conv3d_dgrad_kernel_v1<St::BF16><<<blocks, 128, 0, stream>>>(a, dy, w, dx, acc); break;
  }
  DEX_LAUNCH_CHECK("conv3d_dgrad_kernel_v1", stream);
}

void launch_wgrad_v1(const Conv3dParams& p, St s, const void* x, const void* dy, float* dw, bool acc,
                     cudaStream_t stream) {
  const ConvArgs a = conv_geom(p);
  const int64_t blocks = int64_t(p.K) * p.taps() * ((p.C + 31) / 32);
  DEX_CHECK(blocks <= 2147483647LL, "conv3d_wgrad_cuda: too many weight blocks");
  const dim3 block(32, kWBY);
  switch (s) {
    case St::F32: conv3d_wgrad_kernel_v1<St::F32><<<unsigned(blocks), block, 0, stream>>>(a, x, dy, dw, acc); break;
    case St::F16: conv3d_wgrad_kernel_v1<St::F16><<<unsigned(blocks), block, 0, stream>>>(a, x, dy, dw, acc); break;
    case St::BF16: conv3d_wgrad_kernel_v1<St::BF16><<<unsigned(blocks), block, 0, stream>>>(a, x, dy, dw, acc); break;
  }
  DEX_LAUNCH_CHECK("conv3d_wgrad_kernel_v1", stream);
}

struct SmallWgradPlan {
  int splits = 1;
  int64_t chunk = 1;
};
SmallWgradPlan small_wgrad_plan(const Conv3dParams& p) {
  const int64_t M = p.out_voxels();
  SmallWgradPlan q;
  int64_t splits = (M + kWsChunk - 1) / kWsChunk;
  splits = splits < 1 ? 1 : (splits > kWsMaxSplits ? kWsMaxSplits : splits);
  q.chunk = (M + splits - 1) / splits;
  q.splits = static_cast<int>((M + q.chunk - 1) / q.chunk);  // no empty split
  return q;
}
bool wgrad_small_supports(const Conv3dParams& p) {
  const int64_t tc = int64_t(p.taps()) * p.C;
  return p.out_voxels() > 0 && p.K * tc <= int64_t(kWsThreads) * kWsAcc && p.K + tc <= kWsRow;
}
size_t wgrad_small_workspace_bytes(const Conv3dParams& p) {
  return static_cast<size_t>(small_wgrad_plan(p).splits) * static_cast<size_t>(p.weight_elems()) * sizeof(float);
}

void launch_wgrad_small(const Conv3dParams& p, St s, const void* x, const void* dy, float* dw, bool acc,
                        void* workspace, cudaStream_t stream) {
  const ConvArgs a = conv_geom(p);
  const SmallWgradPlan q = small_wgrad_plan(p);
  float* part = static_cast<float*>(workspace);
  switch (s) {
    case St::F32: conv3d_wgrad_small_kernel<St::F32><<<q.splits, kWsThreads, 0, stream>>>(a, q.chunk, x, dy, part); break;
    case St::F16: conv3d_wgrad_small_kernel<St::F16><<<q.splits, kWsThreads, 0, stream>>>(a, q.chunk, x, dy, part); break;
    case St::BF16: conv3d_wgrad_small_kernel<St::BF16><<<q.splits, kWsThreads, 0, stream>>>(a, q.chunk, x, dy, part); break;
  }
  DEX_LAUNCH_CHECK("conv3d_wgrad_small_kernel", stream);
  const int J = static_cast<int>(p.weight_elems());
  conv3d_wgrad_small_reduce_kernel<<<(J + 255) / 256, 256, 0, stream>>>(J, q.splits, part, dw, acc);
  DEX_LAUNCH_CHECK("conv3d_wgrad_small_reduce_kernel", stream);
}

// The v2 GEMM kernel on a prepared argument block: M GEMM rows, Nn GEMM columns (a.K; K x taps when kTrans).
template <bool kTrans>
void launch_v2_gemm(const ConvArgs& a, int64_t M, int Nn, DType dtype, const void* x, const void* w, void* y,
                    bool accumulate, cudaStream_t stream) {
  const bool bf = dtype == DType::BF16;
  const auto* xs = static_cast<const uint16_t*>(x);
  const auto* ws = static_cast<const uint16_t*>(w);
  auto* ys = static_cast<uint16_t*>(y);
  DEX_CHECK((M + kBM - 1) / kBM <= 2147483647LL, "conv3d v2: too many GEMM rows for the grid");
  const unsigned gm = static_cast<unsigned>((M + kBM - 1) / kBM);
  const auto go = [&](auto ymap) {
    constexpr bool kY = decltype(ymap)::value;
    if (Nn % 64 == 0) {
      const dim3 grid(gm, Nn / 64);
      if (bf) conv3d_fprop_kernel_v2<true, 64, kTrans, kY><<<grid, kV2Threads, 0, stream>>>(a, xs, ws, ys, accumulate);
      else conv3d_fprop_kernel_v2<false, 64, kTrans, kY><<<grid, kV2Threads, 0, stream>>>(a, xs, ws, ys, accumulate);
    } else {
      const dim3 grid(gm, Nn / 32);
      if (bf) conv3d_fprop_kernel_v2<true, 32, kTrans, kY><<<grid, kV2Threads, 0, stream>>>(a, xs, ws, ys, accumulate);
      else conv3d_fprop_kernel_v2<false, 32, kTrans, kY><<<grid, kV2Threads, 0, stream>>>(a, xs, ws, ys, accumulate);
    }
  };
  DEX_CHECK(!(kTrans && a.ymap), "conv3d v2: the transposed GEMM has no parity-class epilogue");
  if constexpr (kTrans) {
    go(std::false_type{});
  } else {
    if (a.ymap) go(std::true_type{});
    else go(std::false_type{});
  }
  DEX_LAUNCH_CHECK(kTrans ? "conv3d_fprop_kernel_v2 (transposed)" : "conv3d_fprop_kernel_v2", stream);
}

void launch_fprop_v2(const Conv3dParams& p, DType dtype, const void* x, const void* w, void* y, cudaStream_t stream) {
  launch_v2_gemm<false>(conv_geom(p), p.out_voxels(), p.K, dtype, x, w, y, false, stream);
}

// dgrad v2: repack the weights per parity class, then one stride-1 GEMM per class over dy (conv3d_v2_layout.h).
void launch_dgrad_v2(const Conv3dParams& p, DType dtype, const void* dy, const void* w, void* dx, bool acc, void* ws,
                     cudaStream_t stream) {
  const int kk[3] = {p.KD, p.KH, p.KW};
  const v2::DgradPlan plan = v2::make_dgrad_plan(p.D, p.H, p.W, p.C, p.K, kk, p.stride, p.pad);
  auto* wt = static_cast<uint16_t*>(ws);
  conv3d_dgrad_repack_kernel<<<grid_1d(p.weight_elems(), 256), 256, 0, stream>>>(
      plan, p.C, p.K, static_cast<int>(p.taps()), static_cast<const uint16_t*>(w), wt);
  DEX_LAUNCH_CHECK("conv3d_dgrad_repack_kernel", stream);
  for (int cls = 0; cls < plan.classes; ++cls) {
    const int r0 = plan.cls_r(cls, 0), r1 = plan.cls_r(cls, 1), r2 = plan.cls_r(cls, 2);
    ConvArgs a{};
    a.N = p.N; a.C = p.K; a.K = p.C; a.D = p.OD(); a.H = p.OH(); a.W = p.OW();
    a.OD = plan.ax[0].J[r0]; a.OH = plan.ax[1].J[r1]; a.OW = plan.ax[2].J[r2];
    if (a.OD == 0 || a.OH == 0 || a.OW == 0) continue;  // no dx voxel has this parity
    a.KD = plan.ax[0].T[r0]; a.KH = plan.ax[1].T[r1]; a.KW = plan.ax[2].T[r2];
    a.taps = a.KD * a.KH * a.KW;
    if (a.taps == 0 && acc) continue;  // no tap reaches these voxels: dx += 0. Overwrite still writes the zeros.
    a.s0 = a.s1 = a.s2 = 1;
    a.p0 = plan.ax[0].pad[r0]; a.p1 = plan.ax[1].pad[r1]; a.p2 = plan.ax[2].pad[r2];
    a.d0 = a.d1 = a.d2 = 1;
    a.ymap = 1;
    a.ys0 = p.stride[0]; a.ys1 = p.stride[1]; a.ys2 = p.stride[2];
    a.yr0 = r0; a.yr1 = r1; a.yr2 = r2;
    a.YD = p.D; a.YH = p.H; a.YW = p.W;
    launch_v2_gemm<false>(a, int64_t(a.N) * a.OD * a.OH * a.OW, p.C, dtype, dy, wt + plan.off[cls], dx, acc, stream);
  }
}

bool wgrad_v2_supports(const Conv3dParams& p, DType dtype, std::string* why) {
  auto no = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  if (dtype != DType::F16 && dtype != DType::BF16) return no(str("v2 needs f16 or bf16 storage, got ", dtype_name(dtype)));
  if (p.C % 32 != 0) return no(str("wgrad v2 needs C % 32 == 0, got C = ", p.C));
  if (p.K % 32 != 0) return no(str("wgrad v2 needs K % 32 == 0, got K = ", p.K));
  if (p.out_voxels() >= (int64_t(1) << 31)) return no("wgrad v2 needs fewer than 2^31 output voxels (32-bit decode)");
  if (p.taps() * p.C >= (int64_t(1) << 31) / p.K) return no("wgrad v2: weight tensor too large");
  return true;
}

v2::WgradSplit wgrad_plan(const Conv3dParams& p) {
  const int BN = p.K % 64 == 0 ? 64 : 32;
  const int64_t tiles = (p.taps() * p.C + v2::kWgBM - 1) / v2::kWgBM * (p.K / BN);
  return v2::wgrad_split(p.out_voxels(), tiles, v2::wgrad_target_ctas(BN));
}
size_t wgrad_v2_workspace_bytes(const Conv3dParams& p) {
  return static_cast<size_t>(wgrad_plan(p).splits) * static_cast<size_t>(p.weight_elems()) * sizeof(float);
}

// wgrad v2: partial GEMMs into the workspace, then the ordered reduction into dw. transposed: p is a transposed
// conv's wgrad seen as a conv3d wgrad with x and dy swapped; dw is written in the transposed conv's layout.
void launch_wgrad_v2(const Conv3dParams& p, DType dtype, const void* x, const void* dy, float* dw, bool acc,
                     bool transposed, void* ws, cudaStream_t stream) {
  const ConvArgs a = conv_geom(p);
  const v2::WgradSplit sp = wgrad_plan(p);
  DEX_CHECK(sp.splits <= 65535, "conv3d wgrad v2: too many splits");
  const bool bf = dtype == DType::BF16;
  const auto* xs = static_cast<const uint16_t*>(x);
  const auto* ds = static_cast<const uint16_t*>(dy);
  auto* part = static_cast<float*>(ws);
  const v2::FastDiv f_ow = v2::make_fastdiv(uint32_t(a.OW)), f_oh = v2::make_fastdiv(uint32_t(a.OH)),
                    f_od = v2::make_fastdiv(uint32_t(a.OD));
  const unsigned gm = static_cast<unsigned>((p.taps() * p.C + v2::kWgBM - 1) / v2::kWgBM);
  const unsigned gz = static_cast<unsigned>(sp.splits);
  if (p.K % 64 == 0) {
    const dim3 grid(gm, p.K / 64, gz);
    if (bf) conv3d_wgrad_kernel_v2<true, 64><<<grid, kV2Threads, 0, stream>>>(a, f_ow, f_oh, f_od, sp.chunk, xs, ds, part);
    else conv3d_wgrad_kernel_v2<false, 64><<<grid, kV2Threads, 0, stream>>>(a, f_ow, f_oh, f_od, sp.chunk, xs, ds, part);
  } else {
    const dim3 grid(gm, p.K / 32, gz);
    if (bf) conv3d_wgrad_kernel_v2<true, 32><<<grid, kV2Threads, 0, stream>>>(a, f_ow, f_oh, f_od, sp.chunk, xs, ds, part);
    else conv3d_wgrad_kernel_v2<false, 32><<<grid, kV2Threads, 0, stream>>>(a, f_ow, f_oh, f_od, sp.chunk, xs, ds, part);
  }
  DEX_LAUNCH_CHECK("conv3d_wgrad_kernel_v2", stream);
  const int64_t W = p.weight_elems();
  conv3d_wgrad_reduce_kernel<<<grid_1d(W, 256), 256, 0, stream>>>(W, sp.splits, p.K, static_cast<int>(p.taps()), p.C,
                                                                   transposed, part, dw, acc);
  DEX_LAUNCH_CHECK("conv3d_wgrad_reduce_kernel", stream);
}

void check_problem(const Conv3dParams& p, const char* what) {
  p.validate();
  DEX_CHECK(p.out_voxels() > 0, what, ": empty output (", p.OD(), "x", p.OH(), "x", p.OW(), ")");
}

}  // namespace

// ---- fp32 (Backend table) --------------------------------------------------------------------------------
size_t conv3d_workspace_bytes_cuda(const Conv3dParams&) { return 0; }

namespace {
// DEX_F32_CONV=tiled routes the fp32 fprop through conv3d_fprop_f32_tiled_cuda where it applies (an opt-in trial of
// that kernel in the whole fp32 plan, for scripts/gpu-check.sh; read once). The default stays v1 until a GPU session
// has checked and timed the tiled kernel.
bool f32_tiled_requested() {
  static const bool on = [] {
    const char* v = std::getenv("DEX_F32_CONV");
    return v && std::string(v) == "tiled";
  }();
  return on;
}
}  // namespace

void conv3d_fprop_cuda(const Conv3dParams& p, const float* x, const float* w, float* y, void*, cudaStream_t stream) {
  check_problem(p, "conv3d_fprop_cuda");
  if (f32_tiled_requested() && conv3d_fprop_f32_tiled_supports(p) && aligned16(x) && aligned16(w) && aligned16(y))
    return conv3d_fprop_f32_tiled_cuda(p, x, w, y, stream);
  launch_fprop_v1(p, St::F32, x, w, y, stream);
}
void conv3d_dgrad_cuda(const Conv3dParams& p, const float* dy, const float* w, float* dx, GradMode mode, void*,
                       cudaStream_t stream) {
  check_problem(p, "conv3d_dgrad_cuda");
  launch_dgrad_v1(p, St::F32, dy, w, dx, mode == GradMode::Accumulate, stream);
}
void conv3d_wgrad_cuda(const Conv3dParams& p, const float* x, const float* dy, float* dw, GradMode mode, void*,
                       cudaStream_t stream) {
  check_problem(p, "conv3d_wgrad_cuda");
  launch_wgrad_v1(p, St::F32, x, dy, dw, mode == GradMode::Accumulate, stream);
}

// ---- f16 / bf16 storage ---------------------------------------------------------------------------------------
bool conv3d_fprop_best_is_wgmma(const Conv3dParams& p, DType dtype) {
  return conv3d_fprop_wgmma_supports(p, dtype, nullptr) && (p.C >= 64 || p.K >= 64);
}

namespace {
// The v3 kernel exists only as sm_90a code: Best takes it on compute capability 9.0 alone.
bool current_device_is_sm90() {
  int dev = 0;
  DEX_CUDA_CHECK(cudaGetDevice(&dev));
  return device_compute_capability(dev) == 90;
}
}  // namespace

bool conv3d_fprop_cuda_supports(const Conv3dParams& p, DType dtype, ConvVariant v, std::string* why) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) {
    if (why) *why = str("unsupported storage dtype ", dtype_name(dtype));
    return false;
  }
  if (v == ConvVariant::Mma) return v2_supports(p, dtype, why);
  if (v == ConvVariant::Wgmma) return conv3d_fprop_wgmma_supports(p, dtype, why);
  return true;  // Direct and Best (which falls back to Direct) take every valid shape
}

void conv3d_fprop_cuda(const Conv3dParams& p, DType dtype, const void* x, const void* w, void* y, ConvVariant v,
                       cudaStream_t stream) {
  check_problem(p, "conv3d_fprop_cuda");
  std::string why;
  DEX_CHECK(conv3d_fprop_cuda_supports(p, dtype, v, &why), "conv3d_fprop_cuda (", conv_variant_name(v), "): ", why);
  if (v == ConvVariant::Wgmma ||
      (v == ConvVariant::Best && conv3d_fprop_best_is_wgmma(p, dtype) && aligned16(x) && aligned16(w) &&
       aligned16(y) && current_device_is_sm90())) {
    conv3d_fprop_wgmma(p, dtype, x, w, y, stream);
    return;
  }
  const bool use_v2 = v == ConvVariant::Mma || (v == ConvVariant::Best && v2_supports(p, dtype, nullptr) &&
                                                aligned16(x) && aligned16(w) && aligned16(y));
  if (!use_v2) {
    launch_fprop_v1(p, storage(dtype), x, w, y, stream);
    return;
  }
  DEX_CHECK(aligned16(x) && aligned16(w) && aligned16(y), "conv3d_fprop_cuda (v2): x, w and y must be 16-byte aligned");
  launch_fprop_v2(p, dtype, x, w, y, stream);
}

namespace {
bool dgrad_v2_supports(const Conv3dParams& p, DType dtype, std::string* why) {
  auto no = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  if (dtype != DType::F16 && dtype != DType::BF16) return no(str("v2 needs f16 or bf16 storage, got ", dtype_name(dtype)));
  for (int i = 0; i < 3; ++i) {
    if (p.dil[i] != 1) return no("dgrad v2 needs dilation 1 (dilated dgrad: v1)");
    if (p.stride[i] != 1 && p.stride[i] != 2) return no(str("dgrad v2 needs stride 1 or 2 per axis, got ", p.stride[i]));
  }
  if (p.K % kBK != 0) return no(str("dgrad v2 needs K % 32 == 0, got K = ", p.K));
  if (p.C % 32 != 0) return no(str("dgrad v2 needs C % 32 == 0, got C = ", p.C));
  return true;
}
}  // namespace

size_t conv3d_dgrad_cuda_workspace_bytes(const Conv3dParams& p, DType dtype) {
  return dgrad_v2_supports(p, dtype, nullptr) ? static_cast<size_t>(p.weight_elems()) * 2 : 0;
}

bool conv3d_dgrad_cuda_supports(const Conv3dParams& p, DType dtype, ConvVariant v, std::string* why) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) {
    if (why) *why = str("unsupported storage dtype ", dtype_name(dtype));
    return false;
  }
  if (v == ConvVariant::Wgmma) return wgmma_is_fprop_only(why);
  if (v == ConvVariant::Mma) return dgrad_v2_supports(p, dtype, why);
  return true;
}

void conv3d_dgrad_cuda(const Conv3dParams& p, DType dtype, const void* dy, const void* w, void* dx, GradMode mode,
                       ConvVariant v, void* workspace, cudaStream_t stream) {
  check_problem(p, "conv3d_dgrad_cuda");
  std::string why;
  DEX_CHECK(conv3d_dgrad_cuda_supports(p, dtype, v, &why), "conv3d_dgrad_cuda (", conv_variant_name(v), "): ", why);
  const bool acc = mode == GradMode::Accumulate;
  const bool use_v2 = v == ConvVariant::Mma || (v == ConvVariant::Best && workspace && dgrad_v2_supports(p, dtype, nullptr) &&
                                                aligned16(dy) && aligned16(dx) && aligned16(workspace));
  if (!use_v2) {
    launch_dgrad_v1(p, storage(dtype), dy, w, dx, acc, stream);
    return;
  }
  DEX_CHECK(workspace, "conv3d_dgrad_cuda (v2): needs a workspace of conv3d_dgrad_cuda_workspace_bytes() = ",
            conv3d_dgrad_cuda_workspace_bytes(p, dtype), " bytes");
  DEX_CHECK(aligned16(dy) && aligned16(dx) && aligned16(workspace),
            "conv3d_dgrad_cuda (v2): dy, dx and the workspace must be 16-byte aligned");
  launch_dgrad_v2(p, dtype, dy, w, dx, acc, workspace, stream);
}

size_t conv3d_wgrad_cuda_workspace_bytes(const Conv3dParams& p, DType dtype) {
  if (wgrad_v2_supports(p, dtype, nullptr)) return wgrad_v2_workspace_bytes(p);
  return wgrad_small_supports(p) ? wgrad_small_workspace_bytes(p) : 0;
}

bool conv3d_wgrad_cuda_supports(const Conv3dParams& p, DType dtype, ConvVariant v, std::string* why) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) {
    if (why) *why = str("unsupported storage dtype ", dtype_name(dtype));
    return false;
  }
  if (v == ConvVariant::Wgmma) return wgmma_is_fprop_only(why);
  if (v == ConvVariant::Mma) return wgrad_v2_supports(p, dtype, why);
  return true;
}

void conv3d_wgrad_cuda(const Conv3dParams& p, DType dtype, const void* x, const void* dy, float* dw, GradMode mode,
                       ConvVariant v, void* workspace, cudaStream_t stream) {
  check_problem(p, "conv3d_wgrad_cuda");
  std::string why;
  DEX_CHECK(conv3d_wgrad_cuda_supports(p, dtype, v, &why), "conv3d_wgrad_cuda (", conv_variant_name(v), "): ", why);
  const bool acc = mode == GradMode::Accumulate;
  const bool use_v2 = v == ConvVariant::Mma || (v == ConvVariant::Best && workspace && wgrad_v2_supports(p, dtype, nullptr) &&
                                                aligned16(x) && aligned16(dy) && aligned16(workspace));
  if (!use_v2) {
    // v1s (split voxels, small weights) where v2 cannot go and the caller gave the workspace it needs.
    if (v == ConvVariant::Best && workspace && !wgrad_v2_supports(p, dtype, nullptr) && wgrad_small_supports(p) &&
        aligned16(workspace)) {
      launch_wgrad_small(p, storage(dtype), x, dy, dw, acc, workspace, stream);
      return;
    }
    launch_wgrad_v1(p, storage(dtype), x, dy, dw, acc, stream);
    return;
  }
  DEX_CHECK(workspace, "conv3d_wgrad_cuda (v2): needs a workspace of conv3d_wgrad_cuda_workspace_bytes() = ",
            conv3d_wgrad_cuda_workspace_bytes(p, dtype), " bytes");
  DEX_CHECK(aligned16(x) && aligned16(dy) && aligned16(workspace),
            "conv3d_wgrad_cuda (v2): x, dy and the workspace must be 16-byte aligned");
  launch_wgrad_v2(p, dtype, x, dy, dw, acc, false, workspace, stream);
}

// ---- transposed conv (kernel == stride) on the v2 kernels; called by conv_transpose3d.cu --------------------------
namespace {
// The conv3d whose fprop is the transposed conv's dgrad and whose wgrad (x and dy swapped) is its wgrad: input = the
// transposed conv's output (C = its K), output = its input (K = its C), kernel = stride, no padding.
Conv3dParams convt_as_conv3d(const ConvTranspose3dParams& p) {
  Conv3dParams q;
  q.N = p.N; q.C = p.K; q.K = p.C; q.D = p.OD(); q.H = p.OH(); q.W = p.OW();
  q.KD = p.KD; q.KH = p.KH; q.KW = p.KW;
  q.stride[0] = p.stride[0]; q.stride[1] = p.stride[1]; q.stride[2] = p.stride[2];
  return q;
}
}  // namespace

bool conv_transpose3d_v2_supports(const ConvTranspose3dParams& p, DType dtype, std::string* why) {
  auto no = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  if (dtype != DType::F16 && dtype != DType::BF16) return no(str("v2 needs f16 or bf16 storage, got ", dtype_name(dtype)));
  if (p.KD != p.stride[0] || p.KH != p.stride[1] || p.KW != p.stride[2] || p.pad[0] || p.pad[1] || p.pad[2])
    return no("v2 needs kernel == stride and no padding (one GEMM)");
  if (p.C % kBK != 0) return no(str("v2 needs C % 32 == 0, got C = ", p.C));
  if ((int64_t(p.K) * p.taps()) % 32 != 0) return no(str("v2 needs K x taps % 32 == 0, got ", p.K * p.taps()));
  return true;
}

// dgrad and wgrad v2 also need K % 32 == 0 (K is the reduction / a GEMM side there).
bool conv_transpose3d_bwd_v2_supports(const ConvTranspose3dParams& p, DType dtype, std::string* why) {
  if (!conv_transpose3d_v2_supports(p, dtype, why)) return false;
  if (p.K % 32 != 0) {
    if (why) *why = str("dgrad / wgrad v2 need K % 32 == 0, got K = ", p.K);
    return false;
  }
  if (!wgrad_v2_supports(convt_as_conv3d(p), dtype, why)) return false;
  return true;
}

size_t conv_transpose3d_dgrad_v2_workspace_bytes(const ConvTranspose3dParams& p) {
  return static_cast<size_t>(p.weight_elems()) * 2;
}
size_t conv_transpose3d_wgrad_v2_workspace_bytes(const ConvTranspose3dParams& p) {
  return wgrad_v2_workspace_bytes(convt_as_conv3d(p));
}

void conv_transpose3d_fprop_v2_launch(const ConvTranspose3dParams& p, DType dtype, const void* x, const void* w,
                                      void* y, cudaStream_t stream) {
  std::string why;
  DEX_CHECK(conv_transpose3d_v2_supports(p, dtype, &why), "conv_transpose3d_fprop_cuda (v2): ", why);
  DEX_CHECK(aligned16(x) && aligned16(w) && aligned16(y), "conv_transpose3d_fprop_cuda (v2): 16-byte aligned pointers");
  ConvArgs a{};
  a.N = p.N; a.C = p.C; a.K = p.K; a.D = p.D; a.H = p.H; a.W = p.W;
  a.OD = p.OD(); a.OH = p.OH(); a.OW = p.OW();
  a.KD = p.KD; a.KH = p.KH; a.KW = p.KW;
  a.s0 = p.stride[0]; a.s1 = p.stride[1]; a.s2 = p.stride[2];
  a.d0 = a.d1 = a.d2 = 1;
  a.taps = p.KD * p.KH * p.KW;
  launch_v2_gemm<true>(a, int64_t(p.N) * p.D * p.H * p.W, p.K * a.taps, dtype, x, w, y, false, stream);
}

// dgrad: dx = conv3d fprop over dy (kernel = stride) with w'[c][tap][k] = w[k][tap][c] repacked into the workspace.
void conv_transpose3d_dgrad_v2_launch(const ConvTranspose3dParams& p, DType dtype, const void* dy, const void* w,
                                      void* dx, bool acc, void* ws, cudaStream_t stream) {
  std::string why;
  DEX_CHECK(conv_transpose3d_bwd_v2_supports(p, dtype, &why), "conv_transpose3d_dgrad_cuda (v2): ", why);
  DEX_CHECK(ws, "conv_transpose3d_dgrad_cuda (v2): needs a workspace of conv_transpose3d_dgrad_cuda_workspace_bytes() = ",
            conv_transpose3d_dgrad_v2_workspace_bytes(p), " bytes");
  DEX_CHECK(aligned16(dy) && aligned16(dx) && aligned16(ws),
            "conv_transpose3d_dgrad_cuda (v2): dy, dx and the workspace must be 16-byte aligned");
  const Conv3dParams q = convt_as_conv3d(p);
  DEX_CHECK(q.OD() == p.D && q.OH() == p.H && q.OW() == p.W, "conv_transpose3d_dgrad_cuda (v2): dx extent mismatch");
  auto* wt = static_cast<uint16_t*>(ws);
  conv_transpose3d_dgrad_repack_kernel<<<grid_1d(p.weight_elems(), 256), 256, 0, stream>>>(
      p.C, p.K, static_cast<int>(p.taps()), static_cast<const uint16_t*>(w), wt);
  DEX_LAUNCH_CHECK("conv_transpose3d_dgrad_repack_kernel", stream);
  launch_v2_gemm<false>(conv_geom(q), q.out_voxels(), q.K, dtype, dy, wt, dx, acc, stream);
}

// wgrad: the conv3d wgrad of q with x3 = dy and dy3 = x; the reduction writes dw in [K][taps][C] order.
void conv_transpose3d_wgrad_v2_launch(const ConvTranspose3dParams& p, DType dtype, const void* x, const void* dy,
                                      float* dw, bool acc, void* ws, cudaStream_t stream) {
  std::string why;
  DEX_CHECK(conv_transpose3d_bwd_v2_supports(p, dtype, &why), "conv_transpose3d_wgrad_cuda (v2): ", why);
  DEX_CHECK(ws, "conv_transpose3d_wgrad_cuda (v2): needs a workspace of conv_transpose3d_wgrad_cuda_workspace_bytes() = ",
            conv_transpose3d_wgrad_v2_workspace_bytes(p), " bytes");
  DEX_CHECK(aligned16(x) && aligned16(dy) && aligned16(ws),
            "conv_transpose3d_wgrad_cuda (v2): x, dy and the workspace must be 16-byte aligned");
  launch_wgrad_v2(convt_as_conv3d(p), dtype, dy, x, dw, acc, true, ws, stream);
}

}  // namespace dex
