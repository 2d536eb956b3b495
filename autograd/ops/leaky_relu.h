// Differentiable LeakyReLU: y = x > 0 ? x : slope * x (DynUNet: slope 0.01).
#pragma once
#include "autograd/tape.h"

namespace dex {

// inplace: y overwrites x's data (also when recording: the backward then reads the sign from y, which is
// valid for slope > 0). Only for an x whose own producer's backward does not read x (norm, add, conv).
Tensor leaky_relu(Tape& tape, const Tensor& x, float slope = 0.01f, bool inplace = false);

}  // namespace dex
