// Label resizing onto the network grid for training and validation targets (configs: "label_resize").
//   nearest  (the bundle, spec §7): PyTorch legacy nearest, src = floor(o * n / m): each grid voxel takes the label
//            of the FIRST file voxel of its area window, so the target is shifted by about half a window against
//            the area-resized image and aliased at every boundary. Harmless at 128^3 for a CT spleen, but on a small
//            grid the spleen is a few voxels across and most of it is boundary: the 32^3 phantom targets cannot be
//            matched better than Dice ~0.75 even by the exact partial-volume fraction thresholded at 0.5.
//   majority (dex's small configuration): each grid voxel takes the most frequent label value of the same window
//            resize_area averages the image over ([floor(o*n/m), ceil((o+1)*n/m)) per axis; ties -> the smaller
//            value), so target and image describe the same block.
#pragma once
#include <string>

#include "data/resize.h"
#include "data/volume.h"

namespace dex {

enum class LabelResize { Nearest, Majority };
// "nearest" / "majority"; anything else -> InputError naming `what`.
LabelResize parse_label_resize(const std::string& s, const std::string& what);
const char* label_resize_name(LabelResize r);

LabelVolume resize_label_majority(const LabelVolume& v, const Shape3& out_shape);
LabelVolume resize_label(const LabelVolume& v, const Shape3& out_shape, LabelResize mode);

}  // namespace dex
