#include "autograd/ops/leaky_relu.h"

namespace dex {

// forward
Tensor leaky_relu(Tape& tape, const Tensor& x, float slope, bool inplace) {
  DEX_CHECK(!inplace || slope > 0, "leaky_relu: in place needs a positive slope (the backward reads the sign of y)");
  const bool rec = tape.needs_grad({&x});
  Tensor y = inplace ? tape.alias(x, rec) : tape.alloc(x, rec);
  tape.be().leaky_relu_fwd(x.numel(), slope, x.data, y.data, nullptr);
  if (rec) {
    // backward: dx = dy * (x > 0 ? 1 : slope); sign(y) == sign(x) for slope > 0
    tape.record([&tape, x, y, slope] {
      if (!tape.grad_ready(y) || !x.grad) return;
      tape.be().leaky_relu_bwd(x.numel(), slope, y.data, y.grad, x.grad, tape.write_mode(x), nullptr);
    });
  }
  return y;
}

}  // namespace dex
