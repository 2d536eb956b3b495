// The 34 convolution layers of the bundle's DynUNet (spec §2.3) at a cubic patch size, batch 1, as problem
// shapes for tests and benchmarks (CPU and CUDA). Filters [32,64,128,256,320,320], strides [1,2,2,2,2,(2,2,1)],
// every 3x3x3 conv padded by 1, 1x1x1 projections unpadded, transposed convs kernel == stride.
// The patch must be a multiple of 32 (five halvings of D and H). Plain header: no dex_core symbols needed.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/common.h"
#include "kernels/conv3d.h"
#include "kernels/conv_transpose3d.h"

namespace dex {

struct ConvLayerShape {
  std::string name;         // state_dict-style module name, e.g. "downsamples.0.conv1"
  bool transposed = false;  // true: use `convt`, false: use `conv`
  Conv3dParams conv;
  ConvTranspose3dParams convt;

  int64_t macs() const { return transposed ? convt.macs() : conv.macs(); }
  double flops() const { return 2.0 * double(macs()); }
  // "C->K k3 s2,2,1 in DxHxW", for tables.
  std::string describe() const {
    const int C = transposed ? convt.C : conv.C, K = transposed ? convt.K : conv.K;
    const int D = transposed ? convt.D : conv.D, H = transposed ? convt.H : conv.H, W = transposed ? convt.W : conv.W;
    const int* s = transposed ? convt.stride : conv.stride;
    const int KD = transposed ? convt.KD : conv.KD, KH = transposed ? convt.KH : conv.KH,
              KW = transposed ? convt.KW : conv.KW;
    return str(transposed ? "convT " : "conv ", C, "->", K, " k", KD, "x", KH, "x", KW, " s", s[0], ",", s[1], ",", s[2],
               " in ", D, "x", H, "x", W);
  }
};

inline Conv3dParams dynunet_conv(int C, int K, int D, int H, int W, int k, int s0, int s1, int s2) {
  Conv3dParams p;
  p.N = 1;
  p.C = C;
  p.K = K;
  p.D = D;
  p.H = H;
  p.W = W;
  p.KD = p.KH = p.KW = k;
  p.stride[0] = s0;
  p.stride[1] = s1;
  p.stride[2] = s2;
  const int pad = k == 3 ? 1 : 0;  // int((k - s + 1) / 2) for k3 s1/s2 and k1 s1/s2
  p.pad[0] = p.pad[1] = p.pad[2] = pad;
  return p;
}

inline ConvTranspose3dParams dynunet_convt(int C, int K, int D, int H, int W, int s0, int s1, int s2) {
  ConvTranspose3dParams p;
  p.N = 1;
  p.C = C;
  p.K = K;
  p.D = D;
  p.H = H;
  p.W = W;
  p.KD = s0;
  p.KH = s1;
  p.KW = s2;
  p.stride[0] = s0;
  p.stride[1] = s1;
  p.stride[2] = s2;
  return p;
}

// All 34 conv / conv-transpose layers in forward order at a patch x patch x patch input with 3 channels.
inline std::vector<ConvLayerShape> dynunet_conv_shapes(int patch = 128) {
  DEX_CHECK(patch >= 32 && patch % 32 == 0, "dynunet_conv_shapes: patch must be a positive multiple of 32, got ",
            patch);
  const int f[6] = {32, 64, 128, 256, 320, 320};
  std::vector<ConvLayerShape> v;
  auto conv = [&](const std::string& name, Conv3dParams p) {
    ConvLayerShape s;
    s.name = name;
    s.conv = p;
    v.push_back(s);
  };
  auto convt = [&](const std::string& name, ConvTranspose3dParams p) {
    ConvLayerShape s;
    s.name = name;
    s.transposed = true;
    s.convt = p;
    v.push_back(s);
  };
  const int P = patch;
  conv("input_block.conv1", dynunet_conv(3, f[0], P, P, P, 3, 1, 1, 1));
  conv("input_block.conv2", dynunet_conv(f[0], f[0], P, P, P, 3, 1, 1, 1));
  conv("input_block.conv3", dynunet_conv(3, f[0], P, P, P, 1, 1, 1, 1));
  for (int i = 0; i < 4; ++i) {
    const int S = P >> i, cin = f[i], cout = f[i + 1];
    const std::string b = "downsamples." + std::to_string(i);
    conv(b + ".conv1", dynunet_conv(cin, cout, S, S, S, 3, 2, 2, 2));
    conv(b + ".conv2", dynunet_conv(cout, cout, S / 2, S / 2, S / 2, 3, 1, 1, 1));
    conv(b + ".conv3", dynunet_conv(cin, cout, S, S, S, 1, 2, 2, 2));
  }
  {
    const int S = P >> 4;  // 8 at 128: bottleneck input
    conv("bottleneck.conv1", dynunet_conv(f[4], f[5], S, S, S, 3, 2, 2, 1));
    conv("bottleneck.conv2", dynunet_conv(f[5], f[5], S / 2, S / 2, S, 3, 1, 1, 1));
    conv("bottleneck.conv3", dynunet_conv(f[4], f[5], S, S, S, 1, 2, 2, 1));
  }
  // Up blocks, deepest first: upsamples.0 takes the bottleneck (S/2 x S/2 x S at 128: 4x4x8).
  for (int u = 0; u < 5; ++u) {
    const int level = 4 - u;       // resolution level of the block's output
    const int S = P >> level;      // output extent
    const int cin = f[level + 1];  // channels coming up
    const int cout = f[level];
    const std::string b = "upsamples." + std::to_string(u);
    if (u == 0)
      convt(b + ".transp_conv", dynunet_convt(cin, cout, S / 2, S / 2, S, 2, 2, 1));
    else
      convt(b + ".transp_conv", dynunet_convt(cin, cout, S / 2, S / 2, S / 2, 2, 2, 2));
    conv(b + ".conv_block.conv1", dynunet_conv(2 * cout, cout, S, S, S, 3, 1, 1, 1));
    conv(b + ".conv_block.conv2", dynunet_conv(cout, cout, S, S, S, 3, 1, 1, 1));
  }
  conv("output_block.conv", dynunet_conv(f[0], 2, P, P, P, 1, 1, 1, 1));
  return v;
}

// The same layer with every input extent clamped to at most max_extent (channels, kernel, stride kept):
// a reduced-size stand-in for tests and for timing the slow reference.
inline ConvLayerShape clamp_extent(ConvLayerShape s, int max_extent) {
  int* d[3] = {s.transposed ? &s.convt.D : &s.conv.D, s.transposed ? &s.convt.H : &s.conv.H,
               s.transposed ? &s.convt.W : &s.conv.W};
  for (int* e : d) *e = std::min(*e, max_extent);
  return s;
}

}  // namespace dex
