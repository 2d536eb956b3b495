// Parameter initialisation (spec §2, MONAI DynUNet.initialize_weights): every conv / transposed-conv weight
// ~ kaiming_normal(a = 0.01, mode fan_in): std = sqrt(2 / (1 + a^2)) / sqrt(fan_in) with PyTorch's fan_in =
// weight.shape[1] * kernel volume (for ConvTranspose3d that is OUT channels * k, PyTorch's quirk); biases 0;
// affine norm weights 1. Parameter i draws from dex::Rng(seed, rng_stream(RngStream::Init, i)) in PyTorch
// layout order, so the values do not depend on dex's internal layout or device.
#pragma once
#include <cstdint>

#include "layers/parameters.h"

namespace dex {

constexpr double kKaimingNegativeSlope = 0.01;

// PyTorch's fan_in for a parameter (weight.shape[1] * prod(shape[2:])).
int64_t torch_fan_in(const ParamSpec& spec);
double kaiming_std(const ParamSpec& spec, double a = kKaimingNegativeSlope);
void kaiming_normal_init(ParameterSet& params, uint64_t seed);

}  // namespace dex
