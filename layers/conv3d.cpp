#include "layers/conv3d.h"

#include "autograd/ops/bias_add.h"
#include "autograd/ops/conv3d.h"

namespace dex {

Int3 monai_padding(const Int3& k, const Int3& s) {
  Int3 p;
  for (int i = 0; i < 3; ++i) {
    DEX_CHECK(k[i] - s[i] + 1 >= 0, "padding for kernel ", k[i], " and stride ", s[i], " would be negative");
    p[i] = (k[i] - s[i] + 1) / 2;
  }
  return p;
}

Conv3d::Conv3d(ParameterSet& ps, const std::string& prefix, int in_channels, int out_channels, Int3 kernel,
               Int3 stride, bool bias)
    : m_ps(&ps), m_stride(stride), m_pad(monai_padding(kernel, stride)) {
  m_weight = ps.declare(prefix + ".weight", {out_channels, in_channels, kernel[0], kernel[1], kernel[2]},
                        ParamKind::Conv);
  if (bias) m_bias = ps.declare(prefix + ".bias", {out_channels}, ParamKind::Bias);
}

Tensor Conv3d::forward(Tape& tape, const Tensor& x) const {
  Tensor y = conv3d(tape, x, m_ps->tensor(m_weight), m_stride.data(), m_pad.data());
  if (m_bias >= 0) y = bias_add(tape, y, m_ps->tensor(m_bias));
  return y;
}

}  // namespace dex
