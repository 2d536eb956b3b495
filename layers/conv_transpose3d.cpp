#include "layers/conv_transpose3d.h"

#include "autograd/ops/conv_transpose3d.h"

namespace dex {

ConvTranspose3d::ConvTranspose3d(ParameterSet& ps, const std::string& prefix, int in_channels, int out_channels,
                                 Int3 kernel, Int3 stride)
    : m_ps(&ps), m_stride(stride), m_pad(monai_padding(kernel, stride)) {
  for (int i = 0; i < 3; ++i)
    DEX_CHECK(2 * m_pad[i] + m_stride[i] - kernel[i] == 0, prefix, ": output padding would be ",
              2 * m_pad[i] + m_stride[i] - kernel[i], " on axis ", i, " (only kernel == stride is supported)");
  m_weight = ps.declare(prefix + ".weight", {in_channels, out_channels, kernel[0], kernel[1], kernel[2]},
                        ParamKind::ConvTranspose);
}

Tensor ConvTranspose3d::forward(Tape& tape, const Tensor& x) const {
  return conv_transpose3d(tape, x, m_ps->tensor(m_weight), m_stride.data(), m_pad.data());
}

}  // namespace dex
