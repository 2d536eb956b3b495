// Transposed 3D convolution, NDHWC activations. dex keeps the weight as KTRSC with K = OUTPUT channels
// ([K][KD][KH][KW][C], C = input channels); PyTorch's [C][K][KD][KH][KW] is transposed once at load.
// y[n, i*s + t*1 - pad, ...][k] += x[n, i, ...][c] * w[k][t][c]  (no output_padding, no dilation).
#pragma once
#include <cstdint>
#include "kernels/common.h"
#include "kernels/conv3d.h"

namespace dex {

struct ConvTranspose3dParams {
  int N = 1, C = 0, K = 0;   // batch, input channels, output channels
  int D = 0, H = 0, W = 0;   // input spatial extent
  int KD = 2, KH = 2, KW = 2;
  int stride[3] = {2, 2, 2};
  int pad[3] = {0, 0, 0};

  int OD() const { return (D - 1) * stride[0] - 2 * pad[0] + KD; }
  int OH() const { return (H - 1) * stride[1] - 2 * pad[1] + KH; }
  int OW() const { return (W - 1) * stride[2] - 2 * pad[2] + KW; }
  int64_t taps() const { return int64_t(KD) * KH * KW; }
  int64_t in_elems() const { return int64_t(N) * D * H * W * C; }
  int64_t out_elems() const { return int64_t(N) * OD() * OH() * OW() * K; }
  int64_t weight_elems() const { return int64_t(K) * taps() * C; }
  int64_t macs() const { return int64_t(N) * D * H * W * C * K * taps(); }
  double flops() const { return 2.0 * double(macs()); }
  void validate() const;
};

void conv_transpose3d_fprop_cpu(const ConvTranspose3dParams& p, const float* x, const float* w, float* y,
                                CpuConvImpl impl = CpuConvImpl::Gemm);
void conv_transpose3d_dgrad_cpu(const ConvTranspose3dParams& p, const float* dy, const float* w, float* dx,
                                GradMode mode = GradMode::Overwrite, CpuConvImpl impl = CpuConvImpl::Gemm);
void conv_transpose3d_wgrad_cpu(const ConvTranspose3dParams& p, const float* x, const float* dy, float* dw,
                                GradMode mode = GradMode::Accumulate, CpuConvImpl impl = CpuConvImpl::Gemm);

}  // namespace dex
