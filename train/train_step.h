// One training step (spec §9): zero_grad, forward (convolutions autocast to 16 bits when set), Dice+CE, backward
// seeded with the loss scale, overflow check + loss-scaler update, Adam with grad_scale = 1/scale (skipped on
// overflow). Activations, saved context and scratch live in the step arena, reset at the start of every step:
// results stay readable until the next step.
#pragma once
#include <cstdint>

#include "autograd/tape.h"
#include "layers/dynunet.h"
#include "train/adam_optimizer.h"
#include "train/loss_scaler.h"

namespace dex {

struct TrainStepResult {
  DiceCEResult loss;
  bool applied = false;     // false: the optimiser step was skipped (non-finite gradients)
  float loss_scale = 1.0f;  // the scale this step's backward used
  Tensor logits;            // valid until the next step (in the arena)
};

class TrainStep {
 public:
  TrainStep(DynUNet& model, AdamOptimizer& optimizer, LossScaler& scaler, Arena& arena);

  // x: host NDHWC [N][D][H][W][in_channels]; target: host [N][D][H][W] class indices.
  TrainStepResult run(const float* x, const uint8_t* target, int N, Int3 spatial);

  // The two halves of run(), for tests that tamper with the gradients in between.
  TrainStepResult forward_backward(const float* x, const uint8_t* target, int N, Int3 spatial);
  bool apply(TrainStepResult& r);

  Arena& arena() { return m_arena; }
  // The step's tape (data parallel: the trainer hooks the gradient buckets into its backward).
  Tape& tape() { return m_tape; }
  // Mixed precision (Tape::autocast): F32 = off; F16 with an enabled loss scaler is torch.amp's recipe (spec §9).
  void set_autocast(DType dt) { m_tape.set_autocast(dt); }
  DType autocast() const { return m_tape.autocast(); }

 private:
  DynUNet& m_model;
  AdamOptimizer& m_opt;
  LossScaler& m_scaler;
  Arena& m_arena;
  Tape m_tape;
};

}  // namespace dex
