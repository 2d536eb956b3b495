// ConvTranspose3d layer with kernel = stride (DynUNet upsampling: exact x2 or x1 per axis), padding 0,
// no output padding, no bias (trans_bias=False). Parameter `<prefix>.weight`, PyTorch shape [C][K][k...].
#pragma once
#include <string>

#include "layers/conv3d.h"

namespace dex {

class ConvTranspose3d {
 public:
  ConvTranspose3d() = default;
  ConvTranspose3d(ParameterSet& ps, const std::string& prefix, int in_channels, int out_channels, Int3 kernel,
                  Int3 stride);
  Tensor forward(Tape& tape, const Tensor& x) const;

 private:
  const ParameterSet* m_ps = nullptr;
  int m_weight = -1;
  Int3 m_stride{2, 2, 2}, m_pad{0, 0, 0};
};

}  // namespace dex
