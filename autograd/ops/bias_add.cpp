#include "autograd/ops/bias_add.h"

namespace dex {

// forward (out of place: y = copy of x, then the in-place bias kernel)
Tensor bias_add(Tape& tape, const Tensor& x, const Tensor& bias) {
  DEX_CHECK(x.ndim == 5 && x.layout == Layout::NDHWC, "bias_add: input must be NDHWC, got ", x.shape_str());
  DEX_CHECK(bias.numel() == x.C(), "bias_add: bias has ", bias.numel(), " elements for ", x.C(), " channels");
  const bool rec = tape.needs_grad({&x, &bias});
  Tensor y = tape.alloc(x, rec);
  const Backend& be = tape.be();
  be.copy(y.data, tape.device(), x.data, tape.device(), x.bytes(), nullptr);
  be.bias_add_fwd(x.voxels(), x.C(), bias.data, y.data, nullptr);
  if (rec) {
    // backward: dx = dy, dbias += sum over voxels of dy
    tape.record([&tape, x, bias, y] {
      if (!tape.grad_ready(y)) return;
      const Backend& be = tape.be();
      if (x.grad) be.add_bwd(x.numel(), y.grad, x.grad, nullptr, tape.write_mode(x), nullptr);
      if (bias.grad) {
        tape.write_mode(bias);
        be.bias_add_bwd(x.voxels(), x.C(), y.grad, bias.grad, nullptr);  // accumulates
      }
    });
  }
  return y;
}

}  // namespace dex
