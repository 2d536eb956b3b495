#include "autograd/ops/leaky_relu.h"

namespace dex {

// forward
Tensor leaky_relu(Tape& tape, const Tensor& x, float slope) {
  const bool rec = tape.needs_grad({&x});
  Tensor y = tape.alloc(x, rec);
  tape.be().leaky_relu_fwd(x.numel(), slope, x.data, y.data, nullptr);
  if (rec) {
    // backward: dx = dy * (x > 0 ? 1 : slope)
    tape.record([&tape, x, y, slope] {
      if (!tape.grad_ready(y) || !x.grad) return;
      tape.be().leaky_relu_bwd(x.numel(), slope, x.data, y.grad, x.grad, tape.write_mode(x), nullptr);
    });
  }
  return y;
}

}  // namespace dex
