#include "layers/basic_block.h"

#include "autograd/ops/leaky_relu.h"

namespace dex {

BasicBlock::BasicBlock(ParameterSet& ps, const std::string& prefix, int in_channels, int out_channels, Int3 kernel,
                       Int3 stride, const BlockOptions& opt)
    : m_slope(opt.negative_slope) {
  m_conv1 = Conv3d(ps, prefix + ".conv1.conv", in_channels, out_channels, kernel, stride, false);
  m_conv2 = Conv3d(ps, prefix + ".conv2.conv", out_channels, out_channels, kernel, {1, 1, 1}, false);
  m_norm1 = InstanceNorm3d(ps, prefix + ".norm1", out_channels, opt.norm_eps, opt.norm_affine);
  m_norm2 = InstanceNorm3d(ps, prefix + ".norm2", out_channels, opt.norm_eps, opt.norm_affine);
}

Tensor BasicBlock::forward(Tape& tape, const Tensor& x) const {
  // In place as in ResBlock::forward.
  Tensor h = leaky_relu(tape, m_norm1.forward(tape, m_conv1.forward(tape, x), true), m_slope, true);
  return leaky_relu(tape, m_norm2.forward(tape, m_conv2.forward(tape, h), true), m_slope, true);
}

}  // namespace dex
