// Differentiable elementwise add of two same-shape tensors (the residual join).
#pragma once
#include "autograd/tape.h"

namespace dex {

// inplace_if_no_grad: when nothing is recorded, y overwrites a.
Tensor add(Tape& tape, const Tensor& a, const Tensor& b, bool inplace_if_no_grad = false);

}  // namespace dex
