// Differentiable instance norm over the spatial voxels of each (sample, channel), biased variance.
// Affine-free in DynUNet (gamma/beta undefined tensors); with gamma and beta ([C]) it is affine.
#pragma once
#include "autograd/tape.h"

namespace dex {

// inplace_if_no_grad: when nothing is recorded, y overwrites x (inference memory); ignored when recording,
// since the backward reads x.
Tensor instance_norm(Tape& tape, const Tensor& x, float eps = 1e-5f, const Tensor& gamma = Tensor(),
                     const Tensor& beta = Tensor(), bool inplace_if_no_grad = false);

}  // namespace dex
