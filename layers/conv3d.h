// Conv3d layer (MONAI `Convolution` wrapper: parameters at `<prefix>.weight` / `<prefix>.bias`), padding
// int((k - s + 1) / 2) per axis as MONAI's get_padding. Bias only where asked (the output head).
#pragma once
#include <array>
#include <string>

#include "autograd/tape.h"
#include "layers/parameters.h"

namespace dex {

using Int3 = std::array<int, 3>;

// MONAI get_padding: int((k - s + 1) / 2); throws when negative.
Int3 monai_padding(const Int3& k, const Int3& s);

class Conv3d {
 public:
  Conv3d() = default;
  Conv3d(ParameterSet& ps, const std::string& prefix, int in_channels, int out_channels, Int3 kernel, Int3 stride,
         bool bias);
  Tensor forward(Tape& tape, const Tensor& x) const;

 private:
  const ParameterSet* m_ps = nullptr;
  int m_weight = -1, m_bias = -1;
  Int3 m_stride{1, 1, 1}, m_pad{0, 0, 0};
};

}  // namespace dex
