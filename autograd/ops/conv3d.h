// Differentiable 3D convolution (no bias): y = conv(x, w). x NDHWC, w KTRSC [K][KD][KH][KW][C].
#pragma once
#include "autograd/tape.h"

namespace dex {

// stride/pad per axis (D, H, W); dilation 1.
Tensor conv3d(Tape& tape, const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]);
// The Conv3dParams conv3d() would run (validates shapes, names the mismatch).
Conv3dParams conv3d_params(const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]);

}  // namespace dex
