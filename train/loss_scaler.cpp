#include "train/loss_scaler.h"

#include <cmath>
#include <vector>

#include "kernels/backend.h"

namespace dex {

LossScaler::LossScaler(const LossScalerConfig& cfg) : m_cfg(cfg), m_scale(cfg.init_scale) {
  DEX_INPUT_CHECK(cfg.init_scale > 0 && std::isfinite(cfg.init_scale), "loss scaler: init_scale ", cfg.init_scale,
                  " must be positive and finite");
  DEX_INPUT_CHECK(cfg.growth_factor > 1, "loss scaler: growth_factor ", cfg.growth_factor, " must be > 1");
  DEX_INPUT_CHECK(cfg.backoff_factor > 0 && cfg.backoff_factor < 1, "loss scaler: backoff_factor ",
                  cfg.backoff_factor, " must be in (0, 1)");
  DEX_INPUT_CHECK(cfg.growth_interval >= 1, "loss scaler: growth_interval ", cfg.growth_interval, " must be >= 1");
}

bool LossScaler::update(bool found_nonfinite) {
  if (found_nonfinite) {
    ++m_skipped;
    if (m_cfg.enabled) {
      m_scale *= m_cfg.backoff_factor;
      m_growth_tracker = 0;
    }
    return false;
  }
  if (m_cfg.enabled && ++m_growth_tracker == m_cfg.growth_interval) {
    m_scale *= m_cfg.growth_factor;
    m_growth_tracker = 0;
  }
  return true;
}

void LossScaler::set_state(float scale, int growth_tracker, int64_t skipped) {
  DEX_INPUT_CHECK(scale > 0 && std::isfinite(scale), "loss scaler state: scale ", scale, " is not positive finite");
  DEX_INPUT_CHECK(growth_tracker >= 0 && growth_tracker < m_cfg.growth_interval, "loss scaler state: growth tracker ",
                  growth_tracker, " outside [0, ", m_cfg.growth_interval, ")");
  m_scale = scale;
  m_growth_tracker = growth_tracker;
  m_skipped = skipped;
}

bool grads_all_finite(const ParameterSet& params) {
  const float* g = params.grads();
  if (params.numel() == 0) return true;
  // On a device with a finite check (CUDA) the gradients stay there: one kernel and a 4-byte flag come back.
  if (params.device() != Device::CPU) {
    const Backend& b = backend(params.device());
    if (b.all_finite) return b.all_finite(g, params.numel(), nullptr);
  }
  std::vector<float> host;
  if (params.device() != Device::CPU) {
    host.resize(static_cast<size_t>(params.numel()));
    backend(params.device()).copy(host.data(), Device::CPU, g, params.device(), params.bytes(), nullptr);
    g = host.data();
  }
  // Summing is cheaper than branching per element and catches inf and nan alike (inf - inf = nan).
  float acc = 0;
  for (int64_t i = 0; i < params.numel(); ++i) acc += g[i] * 0.0f;
  return acc == 0.0f;
}

}  // namespace dex
