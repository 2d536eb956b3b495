#include "layers/instance_norm.h"

#include "autograd/ops/instance_norm.h"

namespace dex {

InstanceNorm3d::InstanceNorm3d(ParameterSet& ps, const std::string& prefix, int channels, float eps, bool affine)
    : m_ps(&ps), m_eps(eps) {
  if (affine) {
    m_weight = ps.declare(prefix + ".weight", {channels}, ParamKind::NormWeight);
    m_bias = ps.declare(prefix + ".bias", {channels}, ParamKind::Bias);
  }
}

Tensor InstanceNorm3d::forward(Tape& tape, const Tensor& x, bool inplace_if_no_grad) const {
  if (m_weight < 0) return instance_norm(tape, x, m_eps, Tensor(), Tensor(), inplace_if_no_grad);
  return instance_norm(tape, x, m_eps, m_ps->tensor(m_weight), m_ps->tensor(m_bias), inplace_if_no_grad);
}

}  // namespace dex
