#include "autograd/ops/dice_ce.h"

namespace dex {

// forward: loss only (the fused kernel computes the gradient again in the backward: a 2-channel softmax is
// cheap next to the network, and this keeps the forward free of a logits-sized buffer)
Tensor dice_ce(Tape& tape, const Tensor& logits, const uint8_t* target, DiceCEResult* result,
               const DiceCEParams& weights) {
  DEX_CHECK(logits.ndim == 5 && logits.layout == Layout::NDHWC, "dice_ce: logits must be NDHWC, got ",
            logits.shape_str());
  DEX_CHECK(target, "dice_ce: target is null");
  DiceCEParams p = weights;
  p.N = logits.N();
  p.C = logits.C();
  p.S = logits.spatial();
  const bool rec = tape.needs_grad({&logits});
  Tensor y = tape.alloc(Tensor({1}), rec);
  const Backend& be = tape.be();
  DiceCEResult r = be.dice_ce_fwd_bwd(p, logits.data, target, nullptr, 1.0f, nullptr);
  float loss = static_cast<float>(r.loss);
  be.copy(y.data, tape.device(), &loss, Device::CPU, sizeof(float), nullptr);
  if (result) *result = r;
  if (rec) {
    // backward: dlogits = dy * d(loss)/d(logits)
    tape.record([&tape, p, logits, target, y] {
      if (!tape.grad_ready(y) || !logits.grad) return;
      const Backend& be = tape.be();
      float dy = 0;
      be.copy(&dy, Device::CPU, y.grad, tape.device(), sizeof(float), nullptr);
      GradMode mode = tape.write_mode(logits);
      if (mode == GradMode::Overwrite) {
        be.dice_ce_fwd_bwd(p, logits.data, target, logits.grad, dy, nullptr);
      } else {
        size_t mark = tape.arena().mark();
        float* tmp = tape.arena().alloc<float>(static_cast<size_t>(logits.numel()));
        be.dice_ce_fwd_bwd(p, logits.data, target, tmp, dy, nullptr);
        be.add_bwd(logits.numel(), tmp, logits.grad, nullptr, GradMode::Accumulate, nullptr);
        tape.arena().release_to(mark);
      }
    });
  }
  return y;
}

}  // namespace dex
