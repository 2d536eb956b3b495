// Differentiable per-channel bias: y = x + bias[c] (the DynUNet output head).
#pragma once
#include "autograd/tape.h"

namespace dex {

Tensor bias_add(Tape& tape, const Tensor& x, const Tensor& bias);

}  // namespace dex
