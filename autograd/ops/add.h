// Differentiable elementwise add of two same-shape tensors (the residual join).
#pragma once
#include "autograd/tape.h"

namespace dex {

Tensor add(Tape& tape, const Tensor& a, const Tensor& b);

}  // namespace dex
