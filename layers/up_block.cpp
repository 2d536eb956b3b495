#include "layers/up_block.h"

#include "autograd/ops/concat.h"

namespace dex {

UpBlock::UpBlock(ParameterSet& ps, const std::string& prefix, int in_channels, int out_channels, Int3 kernel,
                 Int3 upsample_kernel, const BlockOptions& opt) {
  m_transp_conv = ConvTranspose3d(ps, prefix + ".transp_conv.conv", in_channels, out_channels, upsample_kernel,
                                  upsample_kernel);
  m_conv_block = BasicBlock(ps, prefix + ".conv_block", 2 * out_channels, out_channels, kernel, {1, 1, 1}, opt);
}

Tensor UpBlock::forward(Tape& tape, const Tensor& x, const Tensor& skip) const {
  Tensor u = m_transp_conv.forward(tape, x);
  DEX_CHECK(u.D() == skip.D() && u.H() == skip.H() && u.W() == skip.W(), "up block: upsampled ", u.shape_str(),
            " does not match the skip ", skip.shape_str());
  return m_conv_block.forward(tape, concat(tape, u, skip));
}

}  // namespace dex
