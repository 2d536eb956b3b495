// Differentiable channel concat of two NDHWC tensors with the same N, D, H, W: a's channels first, then b's
// (DynUNet up blocks: upsampled first, skip second).
#pragma once
#include "autograd/tape.h"

namespace dex {

Tensor concat(Tape& tape, const Tensor& a, const Tensor& b);

}  // namespace dex
