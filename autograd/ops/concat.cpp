#include "autograd/ops/concat.h"

namespace dex {

// forward
Tensor concat(Tape& tape, const Tensor& a, const Tensor& b) {
  DEX_CHECK(a.ndim == 5 && b.ndim == 5 && a.N() == b.N() && a.D() == b.D() && a.H() == b.H() && a.W() == b.W(),
            "concat: N, D, H, W must match: ", a.shape_str(), " vs ", b.shape_str());
  const bool rec = tape.needs_grad({&a, &b});
  Tensor y = tape.alloc(ndhwc(a.N(), a.D(), a.H(), a.W(), a.C() + b.C()), rec);
  tape.be().concat_fwd(a.voxels(), a.C(), b.C(), a.data, b.data, y.data, nullptr);
  if (rec) {
    // backward: split dy into da (first channels) and db (the rest), each with its own write mode
    tape.record([&tape, a, b, y] {
      if (!tape.grad_ready(y)) return;
      const Backend& be = tape.be();
      if (a.grad) be.concat_bwd(a.voxels(), a.C(), b.C(), y.grad, a.grad, nullptr, tape.write_mode(a), nullptr);
      if (b.grad) be.concat_bwd(a.voxels(), a.C(), b.C(), y.grad, nullptr, b.grad, tape.write_mode(b), nullptr);
    });
  }
  return y;
}

}  // namespace dex
