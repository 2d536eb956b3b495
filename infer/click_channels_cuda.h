// The click path's heatmaps on the GPU, written into the network input in place (issue 8, Segmenter on CUDA):
// kernels/cuda click_heatmap_cuda (bit-identical to data/click_guidance.cpp gaussian_heatmap) into a contiguous
// scratch channel, then copied into channel c of the NDHWC input. Channel 0 (the CT, uploaded once by set_image) is
// never touched. Exists where dex_cuda is built (infer/click_channels_cuda.cu); no CUDA headers needed here.
#pragma once
#include <cstdint>
#include <vector>

#include "data/clicks.h"

namespace dex {

// Scratch floats click_channels_cuda needs for a grid of `voxels`.
inline int64_t click_channels_scratch_floats(int64_t voxels) { return 2 * voxels; }

// input: device NDHWC [grid voxels][C]; channel c receives the heatmap of `points` (grid indices; MONAI's rules:
// a point with a negative coordinate is skipped, the others clamped; none -> all zero). scratch: device,
// click_channels_scratch_floats(grid voxels). stream: a cudaStream_t (nullptr: default). Asynchronous.
void click_channel_cuda(const int64_t grid[3], const std::vector<GridPoint>& points, float sigma, float* input, int C,
                        int c, float* scratch, void* stream);

}  // namespace dex
