#include "autograd/ops/add.h"

namespace dex {

// forward
Tensor add(Tape& tape, const Tensor& a, const Tensor& b, bool inplace_if_no_grad) {
  DEX_CHECK(a.same_shape(b), "add: shapes differ: ", a.shape_str(), " vs ", b.shape_str());
  const bool rec = tape.needs_grad({&a, &b});
  Tensor y = (!rec && inplace_if_no_grad) ? tape.alias(a, false) : tape.alloc(a, rec);
  tape.be().add_fwd(a.numel(), a.data, b.data, y.data, nullptr);
  if (rec) {
    // backward: da = dy, db = dy (each with its own write mode; a and b may be the same tensor)
    tape.record([&tape, a, b, y] {
      if (!tape.grad_ready(y)) return;
      const Backend& be = tape.be();
      if (a.grad) be.add_bwd(a.numel(), y.grad, a.grad, nullptr, tape.write_mode(a), nullptr);
      if (b.grad) be.add_bwd(b.numel(), y.grad, nullptr, b.grad, tape.write_mode(b), nullptr);
    });
  }
  return y;
}

}  // namespace dex
