// Shared shape checks of conv3d and conv_transpose3d: NDHWC input, [K][KD][KH][KW][C] weight. P is
// Conv3dParams or ConvTranspose3dParams (same field names).
#pragma once
#include "autograd/tensor.h"

namespace dex {

template <class P>
P conv_params_from(const char* op, const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]) {
  DEX_CHECK(x.ndim == 5 && x.layout == Layout::NDHWC, op, ": input must be NDHWC, got ", x.shape_str());
  DEX_CHECK(w.ndim == 5 && w.layout == Layout::Weight, op, ": weight must be [K][KD][KH][KW][C], got ", w.shape_str());
  DEX_CHECK(w.dims[4] == x.C(), op, ": weight expects ", w.dims[4], " input channels, input has ", x.C());
  P p;
  p.N = x.N(); p.C = x.C(); p.K = static_cast<int>(w.dims[0]);
  p.D = x.D(); p.H = x.H(); p.W = x.W();
  p.KD = static_cast<int>(w.dims[1]); p.KH = static_cast<int>(w.dims[2]); p.KW = static_cast<int>(w.dims[3]);
  for (int i = 0; i < 3; ++i) { p.stride[i] = stride[i]; p.pad[i] = pad[i]; }
  p.validate();
  return p;
}

}  // namespace dex
