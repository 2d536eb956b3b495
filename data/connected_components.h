// 2D connected components with 8-connectivity (skimage.measure.label with full connectivity, background 0).
// Labels 1..n are numbered in raster order of each component's first pixel (W fastest), as skimage numbers them.
#pragma once
#include <cstdint>
#include <vector>

namespace dex {

// mask: H x W, nonzero = foreground. Writes labels (0 = background) to `labels` (resized to H*W); returns n.
int32_t connected_components_2d(const uint8_t* mask, int64_t H, int64_t W, std::vector<int32_t>& labels);

}  // namespace dex
