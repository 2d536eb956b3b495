// 3D convolution, NDHWC activations, KTRSC weights ([K][KD][KH][KW][C]), no bias (bias_add is its own op).
// Passes use CUTLASS's words: fprop (y = x * w), dgrad (dx from dy), wgrad (dw from x and dy).
#pragma once
#include <cstdint>
#include "kernels/common.h"

namespace dex {

struct Conv3dParams {
  int N = 1, C = 0, K = 0;   // batch, input channels, output channels
  int D = 0, H = 0, W = 0;   // input spatial extent
  int KD = 3, KH = 3, KW = 3;
  int stride[3] = {1, 1, 1};
  int pad[3] = {0, 0, 0};
  int dil[3] = {1, 1, 1};

  int OD() const { return (D + 2 * pad[0] - dil[0] * (KD - 1) - 1) / stride[0] + 1; }
  int OH() const { return (H + 2 * pad[1] - dil[1] * (KH - 1) - 1) / stride[1] + 1; }
  int OW() const { return (W + 2 * pad[2] - dil[2] * (KW - 1) - 1) / stride[2] + 1; }
  int64_t taps() const { return int64_t(KD) * KH * KW; }
  int64_t in_elems() const { return int64_t(N) * D * H * W * C; }
  int64_t out_voxels() const { return int64_t(N) * OD() * OH() * OW(); }
  int64_t out_elems() const { return out_voxels() * K; }
  int64_t weight_elems() const { return int64_t(K) * taps() * C; }
  int64_t macs() const { return out_voxels() * K * taps() * C; }
  double flops() const { return 2.0 * double(macs()); }
  // Bytes moved by one fprop with `elem` bytes per element (input read once, weights once, output written once).
  double bytes(int elem = 4) const { return double(in_elems() + weight_elems() + out_elems()) * elem; }
  void validate() const;  // throws dex::Error naming the bad field
};

// The fprop problem whose output is dgrad's dx (for stride 1): input dy (C = K), output channels C, taps flipped,
// pad' = dil*(k-1) - pad. Both the CPU Gemm path and CUDA's dgrad v2 run stride-1 dgrad this way.
Conv3dParams conv3d_dgrad_as_fprop_params(const Conv3dParams& p);

// CPU variants: Reference is the spec (plain loops, double accumulation, never optimised);
// Gemm is the fast path (im2col + OpenBLAS sgemm, multithreaded), tested against Reference.
enum class CpuConvImpl { Reference, Gemm };

// Workspace for the Gemm path (im2col panels); pass nullptr to let the call allocate it itself.
size_t conv3d_cpu_workspace_bytes(const Conv3dParams& p);

void conv3d_fprop_cpu(const Conv3dParams& p, const float* x, const float* w, float* y,
                      CpuConvImpl impl = CpuConvImpl::Gemm, void* workspace = nullptr);
void conv3d_dgrad_cpu(const Conv3dParams& p, const float* dy, const float* w, float* dx,
                      GradMode mode = GradMode::Overwrite, CpuConvImpl impl = CpuConvImpl::Gemm,
                      void* workspace = nullptr);
void conv3d_wgrad_cpu(const Conv3dParams& p, const float* x, const float* dy, float* dw,
                      GradMode mode = GradMode::Accumulate, CpuConvImpl impl = CpuConvImpl::Gemm,
                      void* workspace = nullptr);

}  // namespace dex
