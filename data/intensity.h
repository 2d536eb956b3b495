// Intensity windowing (MONAI ScaleIntensityRanged with clip=True).
#pragma once
#include "data/volume.h"

namespace dex {

// v' = clamp((v - a_min) / (a_max - a_min) * (b_max - b_min) + b_min, b_min, b_max), computed in float32 like MONAI.
Volume window_intensity(const Volume& v, float a_min = -175.f, float a_max = 250.f, float b_min = 0.f, float b_max = 1.f);
void window_intensity_inplace(Volume& v, float a_min = -175.f, float a_max = 250.f, float b_min = 0.f, float b_max = 1.f);

}  // namespace dex
