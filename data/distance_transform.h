// Chessboard distance transform (scipy.ndimage.distance_transform_cdt with its default "chessboard" metric):
// each inside voxel (mask != 0) gets the chessboard (L-infinity) distance to the nearest outside voxel (mask == 0),
// outside voxels get 0. Neighbourhoods: 8 in 2D, 26 in 3D. The array border does NOT count as outside. A mask with
// no outside voxel at all gives -1 everywhere, as scipy does. Linear time: two raster passes of a chamfer mask
// (forward over the preceding half of the neighbourhood, backward over the following half), which is exact for
// the chessboard metric.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace dex {

// C-order 3D mask of `shape` (axis 2 fastest). Result has the same layout.
std::vector<int32_t> distance_transform_cdt_3d(const uint8_t* mask, const std::array<int64_t, 3>& shape);
// 2D mask of H x W (W fastest): the 3D transform on shape (1, H, W), which is exactly the 8-neighbourhood transform.
std::vector<int32_t> distance_transform_cdt_2d(const uint8_t* mask, int64_t H, int64_t W);

}  // namespace dex
