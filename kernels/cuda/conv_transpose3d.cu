// CUDA transposed 3D convolution (kernels/conv_transpose3d.h): NDHWC, weights [K][KD][KH][KW][C] with K = output
// channels. y[n, i*s + tap - pad][k] += x[n, i][c] * w[k][tap][c].
// Variants:
//   v1 Direct  fp32 | f16 | bf16 storage (dw fp32). fprop: thread = (output voxel, 8 output channels), gathering the
//              taps whose (o + pad - tap) divides by the stride; dgrad: thread = (input voxel, 8 input channels);
//              wgrad: one (32-channel x 8-slice) block per (k, tap, channel chunk), fixed-order column sums.
//   v2 Mma     f16 | bf16, kernel == stride, on conv3d.cu's mma.sync kernels. fprop: one implicit GEMM (M = input
//              voxels, N = K x taps, K-dim = C) with a scattering epilogue (conv3d_v2_layout.h: convt_out_index).
//              dgrad: a conv3d fprop of dy with kernel = stride (M = input voxels, N = C, K-dim = taps x K), weights
//              transposed into the workspace. wgrad: the conv3d wgrad v2 with x and dy swapped (split-voxel GEMM,
//              ordered reduction, deterministic). dgrad / wgrad v2 also need K % 32 == 0.
//   Best       v2 where it applies (dgrad / wgrad: and a workspace is given), else v1.
#include <cuda_runtime.h>

#include "kernels/cuda/conv_common.cuh"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {

// Defined in conv3d.cu next to the v2 kernel.
bool conv_transpose3d_v2_supports(const ConvTranspose3dParams& p, DType dtype, std::string* why);
void conv_transpose3d_fprop_v2_launch(const ConvTranspose3dParams& p, DType dtype, const void* x, const void* w,
                                      void* y, cudaStream_t stream);
bool conv_transpose3d_bwd_v2_supports(const ConvTranspose3dParams& p, DType dtype, std::string* why);
size_t conv_transpose3d_dgrad_v2_workspace_bytes(const ConvTranspose3dParams& p);
size_t conv_transpose3d_wgrad_v2_workspace_bytes(const ConvTranspose3dParams& p);
void conv_transpose3d_dgrad_v2_launch(const ConvTranspose3dParams& p, DType dtype, const void* dy, const void* w,
                                      void* dx, bool acc, void* ws, cudaStream_t stream);
void conv_transpose3d_wgrad_v2_launch(const ConvTranspose3dParams& p, DType dtype, const void* x, const void* dy,
                                      float* dw, bool acc, void* ws, cudaStream_t stream);

namespace {

constexpr int kG = 8;
constexpr int kWBY = 8;

template <St S>
__global__ void conv_transpose3d_fprop_kernel_v1(ConvArgs a, const void* x, const void* w, void* y) {
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
      const int zz = od + a.p0 - t;
      if (zz < 0 || zz % a.s0 != 0 || zz / a.s0 >= a.D) continue;
      for (int rr = 0; rr < a.KH; ++rr) {
        const int yy = oh + a.p1 - rr;
        if (yy < 0 || yy % a.s1 != 0 || yy / a.s1 >= a.H) continue;
        for (int s = 0; s < a.KW; ++s) {
          const int xx = ow + a.p2 - s;
          if (xx < 0 || xx % a.s2 != 0 || xx / a.s2 >= a.W) continue;
          const int tap = (t * a.KH + rr) * a.KW + s;
          const int64_t xo = (((int64_t(n) * a.D + zz / a.s0) * a.H + yy / a.s1) * a.W + xx / a.s2) * a.C;
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

template <St S>
__global__ void conv_transpose3d_dgrad_kernel_v1(ConvArgs a, const void* dy, const void* w, void* dx, bool accumulate) {
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
      const int od = iz * a.s0 - a.p0 + t;
      if (od < 0 || od >= a.OD) continue;
      for (int rr = 0; rr < a.KH; ++rr) {
        const int oh = iy * a.s1 - a.p1 + rr;
        if (oh < 0 || oh >= a.OH) continue;
        for (int s = 0; s < a.KW; ++s) {
          const int ow = ix * a.s2 - a.p2 + s;
          if (ow < 0 || ow >= a.OW) continue;
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

template <St S>
__global__ void conv_transpose3d_wgrad_kernel_v1(ConvArgs a, const void* x, const void* dy, float* dw, bool accumulate) {
  __shared__ double red[32 * kWBY];
  const int CC = (a.C + 31) / 32;
  const int c = (blockIdx.x % CC) * 32 + threadIdx.x;
  const int tap = static_cast<int>((blockIdx.x / CC) % a.taps);
  const int k = static_cast<int>(blockIdx.x / (int64_t(CC) * a.taps));
  const int t = tap / (a.KH * a.KW), rr = (tap / a.KW) % a.KH, s = tap % a.KW;
  const int64_t V = int64_t(a.N) * a.D * a.H * a.W;
  float acc = 0.f;
  if (c < a.C) {
    for (int64_t v = threadIdx.y; v < V; v += kWBY) {
      int64_t r = v;
      const int ix = static_cast<int>(r % a.W); r /= a.W;
      const int iy = static_cast<int>(r % a.H); r /= a.H;
      const int iz = static_cast<int>(r % a.D);
      const int n = static_cast<int>(r / a.D);
      const int od = iz * a.s0 - a.p0 + t, oh = iy * a.s1 - a.p1 + rr, ow = ix * a.s2 - a.p2 + s;
      if (od < 0 || od >= a.OD || oh < 0 || oh >= a.OH || ow < 0 || ow >= a.OW) continue;
      const int64_t oo = (((int64_t(n) * a.OD + od) * a.OH + oh) * a.OW + ow) * a.K + k;
      acc += ld_st<S>(x, v * a.C + c) * ld_st<S>(dy, oo);
    }
  }
  const double sum = column_sum<kWBY>(double(acc), red);
  if (c < a.C && threadIdx.y == 0) {
    const int64_t o = (int64_t(k) * a.taps + tap) * a.C + c;
    dw[o] = accumulate ? dw[o] + static_cast<float>(sum) : static_cast<float>(sum);
  }
}

void check_problem(const ConvTranspose3dParams& p, const char* what) {
  p.validate();
  DEX_CHECK(p.OD() > 0 && p.OH() > 0 && p.OW() > 0, what, ": empty output");
}

void launch_fprop(const ConvTranspose3dParams& p, St s, const void* x, const void* w, void* y, cudaStream_t stream) {
  check_problem(p, "conv_transpose3d_fprop_cuda");
  const ConvArgs a = conv_geom(p);
  const int64_t work = p.out_elems() / p.K * ((p.K + kG - 1) / kG);
  const unsigned blocks = grid_1d(work, 128);
  switch (s) {
    case St::F32: conv_transpose3d_fprop_kernel_v1<St::F32><<<blocks, 128, 0, stream>>>(a, x, w, y); break;
    case St::F16: conv_transpose3d_fprop_kernel_v1<St::F16><<<blocks, 128, 0, stream>>>(a, x, w, y); break;
    case St::BF16: conv_transpose3d_fprop_kernel_v1<St::BF16><<<blocks, 128, 0, stream>>>(a, x, w, y); break;
  }
  DEX_LAUNCH_CHECK("conv_transpose3d_fprop_kernel_v1", stream);
}

}  // namespace

void conv_transpose3d_fprop_cuda(const ConvTranspose3dParams& p, const float* x, const float* w, float* y,
                                 cudaStream_t stream) {
  launch_fprop(p, St::F32, x, w, y, stream);
}

bool conv_transpose3d_fprop_cuda_supports(const ConvTranspose3dParams& p, DType dtype, ConvVariant v,
                                          std::string* why) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) {
    if (why) *why = str("unsupported storage dtype ", dtype_name(dtype));
    return false;
  }
  if (v == ConvVariant::Wgmma) return wgmma_is_fprop_only(why);
  if (v == ConvVariant::Mma) return conv_transpose3d_v2_supports(p, dtype, why);
  return true;
}

void conv_transpose3d_fprop_cuda(const ConvTranspose3dParams& p, DType dtype, const void* x, const void* w, void* y,
                                 ConvVariant v, cudaStream_t stream) {
  std::string why;
  DEX_CHECK(conv_transpose3d_fprop_cuda_supports(p, dtype, v, &why), "conv_transpose3d_fprop_cuda (",
            conv_variant_name(v), "): ", why);
  const auto aligned = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15u) == 0; };
  if (v == ConvVariant::Mma || (v == ConvVariant::Best && conv_transpose3d_v2_supports(p, dtype, nullptr) &&
                                aligned(x) && aligned(w) && aligned(y))) {
    check_problem(p, "conv_transpose3d_fprop_cuda");
    conv_transpose3d_fprop_v2_launch(p, dtype, x, w, y, stream);
    return;
  }
  launch_fprop(p, dtype == DType::F32 ? St::F32 : dtype == DType::F16 ? St::F16 : St::BF16, x, w, y, stream);
}

namespace {
bool dtype_ok(DType t, std::string* why) {
  if (t == DType::F32 || t == DType::F16 || t == DType::BF16) return true;
  if (why) *why = str("unsupported storage dtype ", dtype_name(t));
  return false;
}

void launch_dgrad_v1(const ConvTranspose3dParams& p, St s, const void* dy, const void* w, void* dx, bool acc,
                     cudaStream_t stream) {
  check_problem(p, "conv_transpose3d_dgrad_cuda");
  const ConvArgs a = conv_geom(p);
  const unsigned blocks = grid_1d(p.in_elems() / p.C * ((p.C + kG - 1) / kG), 128);
  switch (s) {
    case St::F32: conv_transpose3d_dgrad_kernel_v1<St::F32><<<blocks, 128, 0, stream>>>(a, dy, w, dx, acc); break;
    case St::F16: conv_transpose3d_dgrad_kernel_v1<St::F16><<<blocks, 128, 0, stream>>>(a, dy, w, dx, acc); break;
    case St::BF16: conv_transpose3d_dgrad_kernel_v1<St::BF16><<<blocks, 128, 0, stream>>>(a, dy, w, dx, acc); break;
  }
  DEX_LAUNCH_CHECK("conv_transpose3d_dgrad_kernel_v1", stream);
}

void launch_wgrad_v1(const ConvTranspose3dParams& p, St s, const void* x, const void* dy, float* dw, bool acc,
                     cudaStream_t stream) {
  check_problem(p, "conv_transpose3d_wgrad_cuda");
  const ConvArgs a = conv_geom(p);
  const int64_t blocks = int64_t(p.K) * p.taps() * ((p.C + 31) / 32);
  DEX_CHECK(blocks <= 2147483647LL, "conv_transpose3d_wgrad_cuda: too many weight blocks");
  const dim3 grid{static_cast<unsigned>(blocks)}, block(32, kWBY);
  switch (s) {
    case St::F32: conv_transpose3d_wgrad_kernel_v1<St::F32><<<grid, block, 0, stream>>>(a, x, dy, dw, acc); break;
    case St::F16: conv_transpose3d_wgrad_kernel_v1<St::F16><<<grid, block, 0, stream>>>(a, x, dy, dw, acc); break;
    case St::BF16: conv_transpose3d_wgrad_kernel_v1<St::BF16><<<grid, block, 0, stream>>>(a, x, dy, dw, acc); break;
  }
  DEX_LAUNCH_CHECK("conv_transpose3d_wgrad_kernel_v1", stream);
}
}  // namespace

void conv_transpose3d_dgrad_cuda(const ConvTranspose3dParams& p, const float* dy, const float* w, float* dx,
                                 GradMode mode, cudaStream_t stream) {
  launch_dgrad_v1(p, St::F32, dy, w, dx, mode == GradMode::Accumulate, stream);
}

void conv_transpose3d_wgrad_cuda(const ConvTranspose3dParams& p, const float* x, const float* dy, float* dw,
                                 GradMode mode, cudaStream_t stream) {
  launch_wgrad_v1(p, St::F32, x, dy, dw, mode == GradMode::Accumulate, stream);
}

size_t conv_transpose3d_dgrad_cuda_workspace_bytes(const ConvTranspose3dParams& p, DType dtype) {
  return conv_transpose3d_bwd_v2_supports(p, dtype, nullptr) ? conv_transpose3d_dgrad_v2_workspace_bytes(p) : 0;
}
size_t conv_transpose3d_wgrad_cuda_workspace_bytes(const ConvTranspose3dParams& p, DType dtype) {
  return conv_transpose3d_bwd_v2_supports(p, dtype, nullptr) ? conv_transpose3d_wgrad_v2_workspace_bytes(p) : 0;
}

bool conv_transpose3d_dgrad_cuda_supports(const ConvTranspose3dParams& p, DType dtype, ConvVariant v,
                                          std::string* why) {
  if (!dtype_ok(dtype, why)) return false;
  if (v == ConvVariant::Wgmma) return wgmma_is_fprop_only(why);
  if (v == ConvVariant::Mma) return conv_transpose3d_bwd_v2_supports(p, dtype, why);
  return true;
}
bool conv_transpose3d_wgrad_cuda_supports(const ConvTranspose3dParams& p, DType dtype, ConvVariant v,
                                          std::string* why) {
  if (!dtype_ok(dtype, why)) return false;
  if (v == ConvVariant::Wgmma) return wgmma_is_fprop_only(why);
  if (v == ConvVariant::Mma) return conv_transpose3d_bwd_v2_supports(p, dtype, why);
  return true;
}

void conv_transpose3d_dgrad_cuda(const ConvTranspose3dParams& p, DType dtype, const void* dy, const void* w, void* dx,
                                 GradMode mode, ConvVariant v, void* workspace, cudaStream_t stream) {
  std::string why;
  DEX_CHECK(conv_transpose3d_dgrad_cuda_supports(p, dtype, v, &why), "conv_transpose3d_dgrad_cuda (",
            conv_variant_name(v), "): ", why);
  const bool acc = mode == GradMode::Accumulate;
  if (v == ConvVariant::Mma || (v == ConvVariant::Best && workspace && conv_transpose3d_bwd_v2_supports(p, dtype, nullptr) &&
                                aligned16(dy) && aligned16(dx) && aligned16(workspace))) {
    check_problem(p, "conv_transpose3d_dgrad_cuda");
    conv_transpose3d_dgrad_v2_launch(p, dtype, dy, w, dx, acc, workspace, stream);
    return;
  }
  launch_dgrad_v1(p, storage(dtype), dy, w, dx, acc, stream);
}

void conv_transpose3d_wgrad_cuda(const ConvTranspose3dParams& p, DType dtype, const void* x, const void* dy, float* dw,
                                 GradMode mode, ConvVariant v, void* workspace, cudaStream_t stream) {
  std::string why;
  DEX_CHECK(conv_transpose3d_wgrad_cuda_supports(p, dtype, v, &why), "conv_transpose3d_wgrad_cuda (",
            conv_variant_name(v), "): ", why);
  const bool acc = mode == GradMode::Accumulate;
  if (v == ConvVariant::Mma || (v == ConvVariant::Best && workspace && conv_transpose3d_bwd_v2_supports(p, dtype, nullptr) &&
                                aligned16(x) && aligned16(dy) && aligned16(workspace))) {
    check_problem(p, "conv_transpose3d_wgrad_cuda");
    conv_transpose3d_wgrad_v2_launch(p, dtype, x, dy, dw, acc, workspace, stream);
    return;
  }
  launch_wgrad_v1(p, storage(dtype), x, dy, dw, acc, stream);
}

}  // namespace dex
