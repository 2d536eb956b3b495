// MONAI UnetUpBlock (spec §2.2): u = transp_conv(x) (kernel = stride = up_k, no bias, no norm/act);
// c = concat([u, skip]) (upsampled first, skip second); y = BasicBlock(2*out -> out)(c).
#pragma once
#include <string>

#include "layers/basic_block.h"
#include "layers/conv_transpose3d.h"

namespace dex {

class UpBlock {
 public:
  UpBlock() = default;
  UpBlock(ParameterSet& ps, const std::string& prefix, int in_channels, int out_channels, Int3 kernel,
          Int3 upsample_kernel, const BlockOptions& opt);
  Tensor forward(Tape& tape, const Tensor& x, const Tensor& skip) const;

 private:
  ConvTranspose3d m_transp_conv;
  BasicBlock m_conv_block;
};

}  // namespace dex
