// Click heatmaps into one channel of the device network input (infer/click_channels_cuda.h).
// v1: click_heatmap_cuda into scratch[0, voxels) (scratch[voxels, 2 voxels) is its work buffer), then one strided
//     copy kernel: input[v * C + c] = heatmap[v].
#include <cuda_runtime.h>

#include "infer/click_channels_cuda.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {
namespace {

__global__ void click_channel_copy_kernel_v1(int64_t voxels, const float* __restrict__ heat, float* __restrict__ input,
                                             int C, int c) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < voxels; v += int64_t(gridDim.x) * blockDim.x)
    input[v * C + c] = heat[v];
}

}  // namespace

void click_channel_cuda(const int64_t grid[3], const std::vector<GridPoint>& points, float sigma, float* input, int C,
                        int c, float* scratch, void* stream) {
  DEX_CHECK(grid[0] > 0 && grid[1] > 0 && grid[2] > 0 && grid[0] <= 4096 && grid[1] <= 4096 && grid[2] <= 4096,
            "click_channel_cuda: bad grid ", grid[0], "x", grid[1], "x", grid[2]);
  DEX_CHECK(c >= 0 && c < C, "click_channel_cuda: channel ", c, " outside [0, ", C, ")");
  DEX_CHECK(input && scratch, "click_channel_cuda: input and scratch must not be null");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t voxels = grid[0] * grid[1] * grid[2];
  std::vector<int> pts;
  pts.reserve(points.size() * 3);
  for (const GridPoint& p : points) pts.insert(pts.end(), {p[0], p[1], p[2]});
  click_heatmap_cuda(int(grid[0]), int(grid[1]), int(grid[2]), pts.data(), int(points.size()), sigma, scratch,
                     scratch + voxels, s);
  click_channel_copy_kernel_v1<<<grid_1d(voxels, 256), 256, 0, s>>>(voxels, scratch, input, C, c);
  DEX_LAUNCH_CHECK("click_channel_copy_kernel_v1", s);
}

}  // namespace dex
