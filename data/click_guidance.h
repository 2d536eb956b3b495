// Click heatmaps (spec §3.9, MONAI AddGuidanceSignalDeepEditd): points set to 1, smoothed with the erf-integrated
// Gaussian (sigma 3, 25 taps, zero padding, separable), then min-max normalised; no points -> all zeros.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace dex {

// The bundle's guidance sigma (grid voxels): the heatmaps every model is trained and run with.
constexpr float kGuidanceSigma = 3.f;

// The 1-D kernel: 2*int(4*sigma + 0.5) + 1 taps, g(x) = 1/2 [erf((x+1/2)/(sigma sqrt 2)) - erf((x-1/2)/(sigma sqrt 2))].
std::vector<float> gaussian_kernel_1d(float sigma = kGuidanceSigma);

// Heatmap over a C-order grid of `shape` (axis 2 fastest). A point with any negative coordinate is skipped; the
// others are clamped to [0, size-1] per axis. (4-element training points: pass their last three entries.)
std::vector<float> gaussian_heatmap(const std::vector<std::array<int, 3>>& points, std::array<int, 3> shape,
                                    float sigma = kGuidanceSigma);
// Same, written to out[voxel * stride] (e.g. one channel of an NDHWC tensor: out = base + c, stride = C).
void gaussian_heatmap_into(const std::vector<std::array<int, 3>>& points, std::array<int, 3> shape, float* out,
                           int64_t stride, float sigma = kGuidanceSigma);

}  // namespace dex
