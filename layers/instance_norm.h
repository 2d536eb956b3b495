// InstanceNorm3d layer: affine-free in DynUNet (spec §2.1); `affine` adds `<prefix>.weight` (1) and
// `<prefix>.bias` (0) as PyTorch does.
#pragma once
#include <string>

#include "autograd/tape.h"
#include "layers/parameters.h"

namespace dex {

class InstanceNorm3d {
 public:
  InstanceNorm3d() = default;
  InstanceNorm3d(ParameterSet& ps, const std::string& prefix, int channels, float eps, bool affine);
  // inplace_if_no_grad: see autograd/ops/instance_norm.h (x must be a temporary of the caller).
  Tensor forward(Tape& tape, const Tensor& x, bool inplace_if_no_grad = false) const;

 private:
  const ParameterSet* m_ps = nullptr;
  float m_eps = 1e-5f;
  int m_weight = -1, m_bias = -1;
};

}  // namespace dex
