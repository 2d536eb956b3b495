// The way in on the GPU (infer/preprocess_cuda.h): orientation, intensity window and area resize of the file's
// voxels into the CT channel of the network input, one thread per grid voxel.
// v1: 3-D launch (x: grid axis 2 in blocks of 128, y: grid axis 1, z: grid axis 0); each thread sums its window
//     (4 x 4 x 1-2 file voxels for 512 x 512 x 100 -> 128^3) reading the file array through the orientation; the
//     file volume (105 MB fp32 for 512 x 512 x 100) is read about once overall.
#include <cuda_runtime.h>

#include "infer/preprocess_cuda.h"
#include "kernels/cuda/cuda_utils.cuh"

namespace dex {
namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads)
    preprocess_ct_kernel_v1(PreprocessGeometry p, const float* __restrict__ file, float* __restrict__ out, int C,
                            int c) {
  const int64_t g2 = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (g2 >= p.grid[2]) return;
  const int64_t g1 = blockIdx.y, g0 = blockIdx.z;
  out[((g0 * p.grid[1] + g1) * p.grid[2] + g2) * C + c] = preprocess_voxel(p, file, g0, g1, g2);
}

}  // namespace

void preprocess_ct_cuda(const PreprocessGeometry& p, const float* file, float* out, int C, int c, void* stream) {
  for (int a = 0; a < 3; ++a)
    DEX_CHECK(p.grid[a] > 0 && p.oriented[a] > 0 && p.file[a] > 0, "preprocess_ct_cuda: non-positive extent on axis ",
              a);
  DEX_CHECK(p.grid[0] <= 65535 && p.grid[1] <= 65535, "preprocess_ct_cuda: grid ", p.grid[0], " x ", p.grid[1],
            " exceeds the launch's 65535 blocks per axis");
  DEX_CHECK(file && out && c >= 0 && c < C, "preprocess_ct_cuda: null buffer or channel ", c, " outside [0, ", C, ")");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const dim3 blocks(static_cast<unsigned>((p.grid[2] + kThreads - 1) / kThreads), static_cast<unsigned>(p.grid[1]),
                    static_cast<unsigned>(p.grid[0]));
  preprocess_ct_kernel_v1<<<blocks, kThreads, 0, s>>>(p, file, out, C, c);
  DEX_LAUNCH_CHECK("preprocess_ct_kernel_v1", s);
}

}  // namespace dex
