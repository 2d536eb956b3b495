// MONAI UnetBasicBlock (stride 1 inside the up blocks): lrelu(norm1(conv1(x))) -> lrelu(norm2(conv2(.))).
#pragma once
#include <string>

#include "layers/block_options.h"
#include "layers/conv3d.h"
#include "layers/instance_norm.h"

namespace dex {

class BasicBlock {
 public:
  BasicBlock() = default;
  BasicBlock(ParameterSet& ps, const std::string& prefix, int in_channels, int out_channels, Int3 kernel,
             Int3 stride, const BlockOptions& opt);
  Tensor forward(Tape& tape, const Tensor& x) const;

 private:
  Conv3d m_conv1, m_conv2;
  InstanceNorm3d m_norm1, m_norm2;
  float m_slope = 0.01f;
};

}  // namespace dex
