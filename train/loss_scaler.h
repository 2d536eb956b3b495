// Dynamic loss scale with torch.cuda.amp.GradScaler's defaults (spec §9): start at 65536, x2 after 2000
// consecutive clean steps, x0.5 and skip the optimiser step when a gradient is inf/nan. Disabled (scale 1,
// never skips... but still reports non-finite gradients) for fp32 training on the CPU.
#pragma once
#include <cstdint>

#include "layers/parameters.h"

namespace dex {

struct LossScalerConfig {
  bool enabled = false;
  float init_scale = 65536.0f;
  float growth_factor = 2.0f;
  float backoff_factor = 0.5f;
  int growth_interval = 2000;
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerConfig& cfg = LossScalerConfig());

  // The factor the loss gradient is seeded with (1 when disabled).
  float scale() const { return m_cfg.enabled ? m_scale : 1.0f; }
  // After the backward: given whether some gradient is inf/nan, adjusts the scale and says whether the
  // optimiser step may run. Disabled: never changes the scale, and skips on non-finite gradients too
  // (an fp32 overflow is a bug worth not propagating into the weights).
  bool update(bool found_nonfinite);

  const LossScalerConfig& config() const { return m_cfg; }
  int growth_tracker() const { return m_growth_tracker; }
  int64_t skipped_steps() const { return m_skipped; }
  void set_state(float scale, int growth_tracker, int64_t skipped);

 private:
  LossScalerConfig m_cfg;
  float m_scale;
  int m_growth_tracker = 0;
  int64_t m_skipped = 0;
};

// True when every gradient in the set is finite (copies to the host when the set is not on the CPU).
bool grads_all_finite(const ParameterSet& params);

}  // namespace dex
