#include "train/adam_optimizer.h"

#include "kernels/backend.h"

namespace dex {

AdamOptimizer::AdamOptimizer(ParameterSet& params, const AdamParams& hyper) : m_params(params), m_hyper(hyper) {
  DEX_CHECK(params.allocated(), "AdamOptimizer: parameters are not allocated");
  const Backend& be = backend(params.device());
  m_m = Buffer(*be.allocator, params.bytes());
  m_v = Buffer(*be.allocator, params.bytes());
  be.fill_zero(m_m.data(), params.bytes(), nullptr);
  be.fill_zero(m_v.data(), params.bytes(), nullptr);
}

void AdamOptimizer::step(float grad_scale) {
  ++m_step;
  backend(m_params.device())
      .adam_step(m_hyper, m_step, m_params.numel(), m_params.values(), m_params.grads(), m_m.as<float>(),
                 m_v.as<float>(), grad_scale, nullptr);
}

namespace {
std::vector<float> to_host(const ParameterSet& ps, const Buffer& b) {
  std::vector<float> h(static_cast<size_t>(ps.numel()));
  backend(ps.device()).copy(h.data(), Device::CPU, b.data(), ps.device(), ps.bytes(), nullptr);
  return h;
}
}  // namespace

std::vector<float> AdamOptimizer::exp_avg() const { return to_host(m_params, m_m); }
std::vector<float> AdamOptimizer::exp_avg_sq() const { return to_host(m_params, m_v); }

void AdamOptimizer::set_state(int64_t step, const std::vector<float>& exp_avg, const std::vector<float>& exp_avg_sq) {
  DEX_INPUT_CHECK(step >= 0, "Adam state: negative step ", step);
  DEX_INPUT_CHECK(static_cast<int64_t>(exp_avg.size()) == m_params.numel() &&
                      static_cast<int64_t>(exp_avg_sq.size()) == m_params.numel(),
                  "Adam state: moments have ", exp_avg.size(), " and ", exp_avg_sq.size(), " values for ",
                  m_params.numel(), " parameters");
  const Backend& be = backend(m_params.device());
  be.copy(m_m.data(), m_params.device(), exp_avg.data(), Device::CPU, m_params.bytes(), nullptr);
  be.copy(m_v.data(), m_params.device(), exp_avg_sq.data(), Device::CPU, m_params.bytes(), nullptr);
  m_step = step;
}

}  // namespace dex
