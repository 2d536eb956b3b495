// conv3d fprop in fp32 on CUDA cores: a shared-memory tiled implicit GEMM (v2f32), for the fp32 inference plan,
// whose convolutions are the v1 direct kernels today (1.22 s per 128^3 forward on an H100, 2026-11-27, against
// PyTorch's 32 ms with TF32 / 53 ms without).
//
// NOT YET RUN ON A GPU (written after the session's GPU time was spent): it is reachable only through
// conv3d_fprop_f32_tiled_cuda() and, opt-in, DEX_F32_CONV=tiled (conv3d.cu's fp32 fprop); tests/cuda/
// test_conv_f32_tiled.cpp, the conv3d_fprop/f32_tiled rows of dex_bench_cuda and the fp32 plan run with
// DEX_F32_CONV=tiled (scripts/gpu-check.sh) check and time it on the next lease. Make it the default only after those.
//
// GEMM view (NDHWC activations, KTRSC weights): Y[m][k] = sum over taps t and channels c of X[in(m, t)][c] W[k][t][c],
// m = output voxel (M = N x OD x OH x OW), k = output channel. Block tile 64 rows x BN columns (BN = 64 when
// K % 64 == 0, else 32), reduction in steps of 16 channels of one tap. 256 threads: thread (tx = tid % 16,
// ty = tid / 16) owns rows 4 ty .. 4 ty + 3 and columns tx, tx + 16, ... (BN / 16 of them, strided so that the
// warp's 16 tx lanes read 16 consecutive words of a shared-memory row: no bank conflicts). Loads: each thread
// gathers one float4 (4 channels) of one row per step (64 rows x 16 channels), zero outside the volume or past M;
// the weights likewise (BN x 16). Accumulation in fp32 in the fixed order taps, then channels: deterministic.
// Needs C % 16 == 0 (float4 loads of 16-channel steps) and K % 32 == 0: every DynUNet conv but the C = 3 input
// convs and the K = 2 head.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "kernels/cuda/conv_common.cuh"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {
namespace {

constexpr int kTM = 64;  // rows per block
constexpr int kTK = 16;  // channels per reduction step

template <int BN>
__global__ void __launch_bounds__(256) conv3d_fprop_f32_tiled_kernel(ConvArgs a, const float* __restrict__ x,
                                                                     const float* __restrict__ w,
                                                                     float* __restrict__ y) {
  constexpr int TN = BN / 16;                   // columns per thread
  __shared__ __align__(16) float As[kTK][kTM];  // [channel][row]
  __shared__ __align__(16) float Bs[kTK][BN];   // [channel][column]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t M = int64_t(a.N) * a.OD * a.OH * a.OW;
  const int64_t m0 = int64_t(blockIdx.x) * kTM;
  const int k0 = blockIdx.y * BN;

  // This thread's gather row (one of 64) and channel quad (one of 4) for the X tile.
  const int lr = tid / 4, lq = (tid % 4) * 4;
  const int64_t lm = m0 + lr;
  const bool row_ok = lm < M;
  int n = 0, od = 0, oh = 0, ow = 0;
  if (row_ok) {
    int64_t r = lm;
    ow = static_cast<int>(r % a.OW); r /= a.OW;
    oh = static_cast<int>(r % a.OH); r /= a.OH;
    od = static_cast<int>(r % a.OD);
    n = static_cast<int>(r / a.OD);
  }
  // The W tile: BN x 16 floats, one float4 per thread (threads >= BN x 4 load nothing when BN = 32).
  const int wk = tid / 4, wq = (tid % 4) * 4;
  const bool w_loader = wk < BN;

  float acc[4][TN];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  for (int tap = 0; tap < a.taps; ++tap) {
    const int t = tap / (a.KH * a.KW), rr = (tap / a.KW) % a.KH, ss = tap % a.KW;
    const int iz = od * a.s0 - a.p0 + t * a.d0, iy = oh * a.s1 - a.p1 + rr * a.d1, ix = ow * a.s2 - a.p2 + ss * a.d2;
    const bool in = row_ok && iz >= 0 && iz < a.D && iy >= 0 && iy < a.H && ix >= 0 && ix < a.W;
    const float* xrow = in ? x + (((int64_t(n) * a.D + iz) * a.H + iy) * a.W + ix) * a.C : nullptr;
    const float* wrow = w_loader ? w + (int64_t(k0 + wk) * a.taps + tap) * a.C : nullptr;
    for (int c0 = 0; c0 < a.C; c0 += kTK) {
      const float4 xv = in ? *reinterpret_cast<const float4*>(xrow + c0 + lq) : make_float4(0.f, 0.f, 0.f, 0.f);
      float4 wv = make_float4(0.f, 0.f, 0.f, 0.f);
      if (w_loader) wv = *reinterpret_cast<const float4*>(wrow + c0 + wq);
      __syncthreads();  // the previous step's tiles are consumed
      As[lq + 0][lr] = xv.x;
      As[lq + 1][lr] = xv.y;
      As[lq + 2][lr] = xv.z;
      As[lq + 3][lr] = xv.w;
      if (w_loader) {
        Bs[wq + 0][wk] = wv.x;
        Bs[wq + 1][wk] = wv.y;
        Bs[wq + 2][wk] = wv.z;
        Bs[wq + 3][wk] = wv.w;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kTK; ++kk) {
        const float4 av = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
        const float ar[4] = {av.x, av.y, av.z, av.w};
        float br[TN];
#pragma unroll
        for (int j = 0; j < TN; ++j) br[j] = Bs[kk][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty * 4 + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) y[m * a.K + k0 + tx + 16 * j] = acc[i][j];
  }
}

}  // namespace

bool conv3d_fprop_f32_tiled_supports(const Conv3dParams& p, std::string* why) {
  auto no = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  if (p.C % kTK != 0) return no(str("f32 tiled needs C % 16 == 0, got C = ", p.C));
  if (p.K % 32 != 0) return no(str("f32 tiled needs K % 32 == 0, got K = ", p.K));
  if (p.out_voxels() <= 0) return no("f32 tiled: empty output");
  if ((p.out_voxels() + kTM - 1) / kTM > 2147483647LL) return no("f32 tiled: too many output voxels for the grid");
  return true;
}

void conv3d_fprop_f32_tiled_cuda(const Conv3dParams& p, const float* x, const float* w, float* y,
                                 cudaStream_t stream) {
  p.validate();
  std::string why;
  DEX_CHECK(conv3d_fprop_f32_tiled_supports(p, &why), "conv3d_fprop_f32_tiled_cuda: ", why);
  DEX_CHECK(aligned16(x) && aligned16(w) && aligned16(y), "conv3d_fprop_f32_tiled_cuda: x, w and y must be 16-byte "
            "aligned");
  const ConvArgs a = conv_geom(p);
  const unsigned gx = static_cast<unsigned>((p.out_voxels() + kTM - 1) / kTM);
  if (p.K % 64 == 0)
    conv3d_fprop_f32_tiled_kernel<64><<<dim3(gx, p.K / 64), 256, 0, stream>>>(a, x, w, y);
  else
    conv3d_fprop_f32_tiled_kernel<32><<<dim3(gx, p.K / 32), 256, 0, stream>>>(a, x, w, y);
  DEX_LAUNCH_CHECK("conv3d_fprop_f32_tiled_kernel", stream);
}

}  // namespace dex
