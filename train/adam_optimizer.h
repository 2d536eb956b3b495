// Adam over a ParameterSet (torch.optim.Adam semantics, spec §9: lr 1e-4, betas 0.9/0.999, eps 1e-8): fp32
// master weights (the ParameterSet itself) and fp32 moments, each ONE allocation over the contiguous
// parameter buffer, so a step is one backend().adam_step call.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/adam.h"
#include "kernels/arena.h"
#include "layers/parameters.h"

namespace dex {

class AdamOptimizer {
 public:
  AdamOptimizer(ParameterSet& params, const AdamParams& hyper = AdamParams());

  // One update from the gradients in params.grads(), multiplied by grad_scale first (1/loss_scale).
  void step(float grad_scale = 1.0f);
  int64_t step_count() const { return m_step; }
  const AdamParams& hyper() const { return m_hyper; }
  void set_lr(float lr) { m_hyper.lr = lr; }

  // State for checkpoints: the moments on the host (internal parameter order) and the step count.
  std::vector<float> exp_avg() const;
  std::vector<float> exp_avg_sq() const;
  void set_state(int64_t step, const std::vector<float>& exp_avg, const std::vector<float>& exp_avg_sq);

 private:
  ParameterSet& m_params;
  AdamParams m_hyper;
  int64_t m_step = 0;
  Buffer m_m, m_v;
};

}  // namespace dex
