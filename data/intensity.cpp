#include "data/intensity.h"

#include <algorithm>

#include "kernels/common.h"

namespace dex {

void window_intensity_inplace(Volume& v, float a_min, float a_max, float b_min, float b_max) {
  DEX_INPUT_CHECK(a_max != a_min, "intensity window: a_min and a_max must differ (both ", a_min, ")");
  // Same float32 operations, in the same order, as MONAI ScaleIntensityRange (clip=True).
  const float range = a_max - a_min, out_range = b_max - b_min;
  const float lo = std::min(b_min, b_max), hi = std::max(b_min, b_max);
  float* d = v.data.data();
  const int64_t n = static_cast<int64_t>(v.data.size());
  for (int64_t i = 0; i < n; ++i) {
    float& x = d[i];
    float t = (x - a_min) / range;
    t = t * out_range + b_min;
    x = std::min(std::max(t, lo), hi);
  }
}

Volume window_intensity(const Volume& v, float a_min, float a_max, float b_min, float b_max) {
  Volume r = v;
  window_intensity_inplace(r, a_min, a_max, b_min, b_max);
  return r;
}

}  // namespace dex
