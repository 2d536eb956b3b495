// Differentiable LeakyReLU: y = x > 0 ? x : slope * x (DynUNet: slope 0.01).
#pragma once
#include "autograd/tape.h"

namespace dex {

Tensor leaky_relu(Tape& tape, const Tensor& x, float slope = 0.01f);

}  // namespace dex
