#include "autograd/ops/instance_norm.h"

namespace dex {

// forward: saves mean and rstd ([N*C], from the arena) for the backward
Tensor instance_norm(Tape& tape, const Tensor& x, float eps, const Tensor& gamma, const Tensor& beta,
                     bool inplace_if_no_grad) {
  DEX_CHECK(x.ndim == 5 && x.layout == Layout::NDHWC, "instance_norm: input must be NDHWC, got ", x.shape_str());
  InstanceNormParams p;
  p.N = x.N();
  p.C = x.C();
  p.S = x.spatial();
  p.eps = eps;
  p.affine = gamma.defined();
  DEX_CHECK(gamma.defined() == beta.defined(), "instance_norm: gamma and beta must both be given or both omitted");
  if (p.affine)
    DEX_CHECK(gamma.numel() == p.C && beta.numel() == p.C, "instance_norm: gamma/beta must have ", p.C,
              " elements, got ", gamma.numel(), " and ", beta.numel());
  const bool rec = tape.needs_grad({&x, &gamma, &beta});
  Tensor y = (!rec && inplace_if_no_grad) ? tape.alias(x, false) : tape.alloc(x, rec);
  float* mean = tape.arena().alloc<float>(static_cast<size_t>(p.N) * p.C);
  float* rstd = tape.arena().alloc<float>(static_cast<size_t>(p.N) * p.C);
  tape.be().instance_norm_fwd(p, x.data, gamma.data, beta.data, y.data, mean, rstd, nullptr);
  if (rec) {
    // backward: dx (per the tape's write rule), dgamma/dbeta accumulate
    tape.record([&tape, p, x, y, gamma, beta, mean, rstd] {
      if (!tape.grad_ready(y)) return;
      size_t mark = tape.arena().mark();
      float* dx = x.grad;
      GradMode mode = GradMode::Overwrite;
      if (dx) mode = tape.write_mode(x);
      else dx = tape.arena().alloc<float>(static_cast<size_t>(x.numel()));  // affine params only
      float* dgamma = p.affine ? gamma.grad : nullptr;
      float* dbeta = p.affine ? beta.grad : nullptr;
      DEX_CHECK(!p.affine || (dgamma && dbeta), "instance_norm: affine backward needs gamma and beta gradients");
      tape.be().instance_norm_bwd(p, x.data, y.grad, mean, rstd, gamma.data, dx, dgamma, dbeta, mode, nullptr);
      tape.arena().release_to(mark);
    });
  }
  return y;
}

}  // namespace dex
