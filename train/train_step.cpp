#include "train/train_step.h"

#include "autograd/ops/dice_ce.h"

namespace dex {

TrainStep::TrainStep(DynUNet& model, AdamOptimizer& optimizer, LossScaler& scaler, Arena& arena)
    : m_model(model), m_opt(optimizer), m_scaler(scaler), m_arena(arena), m_tape(arena, model.device()) {}

TrainStepResult TrainStep::forward_backward(const float* x, const uint8_t* target, int N, Int3 spatial) {
  DEX_CHECK(x && target, "train step: null input or target");
  m_tape.clear();
  m_arena.reset();
  const Backend& be = m_tape.be();
  const Device dev = m_model.device();
  Tensor xin = m_tape.alloc(ndhwc(N, spatial[0], spatial[1], spatial[2], m_model.config().in_channels), false);
  be.copy(xin.data, dev, x, Device::CPU, xin.bytes(), nullptr);
  const int64_t vox = xin.voxels();
  uint8_t* t = m_arena.alloc<uint8_t>(static_cast<size_t>(vox));
  be.copy(t, dev, target, Device::CPU, static_cast<size_t>(vox), nullptr);

  m_model.parameters().zero_grad();
  TrainStepResult r;
  r.logits = m_model.forward(m_tape, xin);
  Tensor loss = dice_ce(m_tape, r.logits, t, &r.loss);
  r.loss_scale = m_scaler.scale();
  be.copy(loss.grad, dev, &r.loss_scale, Device::CPU, sizeof(float), nullptr);
  m_tape.mark_written(loss);
  m_tape.backward();
  return r;
}

bool TrainStep::apply(TrainStepResult& r) {
  r.applied = m_scaler.update(!grads_all_finite(m_model.parameters()));
  if (r.applied) m_opt.step(1.0f / r.loss_scale);
  return r.applied;
}

TrainStepResult TrainStep::run(const float* x, const uint8_t* target, int N, Int3 spatial) {
  TrainStepResult r = forward_backward(x, target, N, spatial);
  apply(r);
  return r;
}

}  // namespace dex
