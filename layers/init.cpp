#include "layers/init.h"

#include <cmath>

#include "kernels/rng.h"

namespace dex {

int64_t torch_fan_in(const ParamSpec& spec) {
  DEX_CHECK(spec.torch_shape.size() >= 2, "fan_in of ", spec.name, ": rank ", spec.torch_shape.size(), " < 2");
  int64_t fan = spec.torch_shape[1];
  for (size_t i = 2; i < spec.torch_shape.size(); ++i) fan *= spec.torch_shape[i];
  return fan;
}

double kaiming_std(const ParamSpec& spec, double a) {
  return std::sqrt(2.0 / (1.0 + a * a)) / std::sqrt(static_cast<double>(torch_fan_in(spec)));
}

void kaiming_normal_init(ParameterSet& params, uint64_t seed) {
  for (int i = 0; i < params.size(); ++i) {
    const ParamSpec& s = params.spec(i);
    std::vector<float> v(static_cast<size_t>(s.numel));
    if (s.kind == ParamKind::Conv || s.kind == ParamKind::ConvTranspose) {
      const double std = kaiming_std(s);
      Rng rng(seed, rng_stream(RngStream::Init, static_cast<uint64_t>(i)));
      for (float& x : v) x = static_cast<float>(std * rng.normal());
    } else {
      const float fill = s.kind == ParamKind::NormWeight ? 1.0f : 0.0f;
      for (float& x : v) x = fill;
    }
    params.set_torch(i, v);
  }
}

}  // namespace dex
