// Differentiable transposed 3D convolution (no bias, no output padding). x NDHWC, w [K][KD][KH][KW][C] with
// K = output channels (PyTorch's [C][K][KD][KH][KW] is transposed once at load).
#pragma once
#include "autograd/tape.h"

namespace dex {

Tensor conv_transpose3d(Tape& tape, const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]);
ConvTranspose3dParams conv_transpose3d_params(const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]);

}  // namespace dex
