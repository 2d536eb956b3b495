// The conv problems of the CUDA conv kernel tests (test_conv_wgmma, test_conv3d_wgmma_layout, test_conv_f32_tiled):
// shape(): NDHWC problem with a cubic kernel, 3x3x3 padded by its dilation ("same" at stride 1), 1x1x1 unpadded;
// NamedConv: a problem with the name its parameterised rows print.
#pragma once
#include "kernels/conv3d.h"

namespace dex {

inline Conv3dParams shape(int N, int C, int K, int D, int H, int W, int k, int s0, int s1, int s2, int dil = 1) {
  Conv3dParams p;
  p.N = N; p.C = C; p.K = K; p.D = D; p.H = H; p.W = W;
  p.KD = p.KH = p.KW = k;
  p.stride[0] = s0; p.stride[1] = s1; p.stride[2] = s2;
  const int pad = k == 3 ? dil : 0;
  p.pad[0] = p.pad[1] = p.pad[2] = pad;
  p.dil[0] = p.dil[1] = p.dil[2] = dil;
  return p;
}

struct NamedConv {
  const char* name;
  Conv3dParams p;
};

}  // namespace dex
