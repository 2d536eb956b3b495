// MONAI UnetResBlock (spec §2.2): h = lrelu(norm1(conv1(x, stride))); h = norm2(conv2(h));
// r = norm3(conv3_1x1(x, stride)) when channels or stride change, else x; y = lrelu(h + r).
#pragma once
#include <string>

#include "layers/block_options.h"
#include "layers/conv3d.h"
#include "layers/instance_norm.h"

namespace dex {

class ResBlock {
 public:
  ResBlock() = default;
  ResBlock(ParameterSet& ps, const std::string& prefix, int in_channels, int out_channels, Int3 kernel, Int3 stride,
           const BlockOptions& opt);
  Tensor forward(Tape& tape, const Tensor& x) const;

 private:
  Conv3d m_conv1, m_conv2, m_conv3;
  InstanceNorm3d m_norm1, m_norm2, m_norm3;
  bool m_project = false;
  float m_slope = 0.01f;
};

}  // namespace dex
