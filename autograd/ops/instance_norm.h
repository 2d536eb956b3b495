// Differentiable instance norm over the spatial voxels of each (sample, channel), biased variance.
// Affine-free in DynUNet (gamma/beta undefined tensors); with gamma and beta ([C]) it is affine.
#pragma once
#include "autograd/tape.h"

namespace dex {

Tensor instance_norm(Tape& tape, const Tensor& x, float eps = 1e-5f, const Tensor& gamma = Tensor(),
                     const Tensor& beta = Tensor());

}  // namespace dex
