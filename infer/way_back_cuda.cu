// The way back on the GPU (issue 8): network output on the grid -> mask (+ spleen probability) in the file's
// geometry, one thread per FILE voxel, written in file order (coalesced stores); the index math is the DEX_HD code of
// infer/way_back_cuda.h, shared with the CPU reference way_back_cpu (tests/infer/test_way_back_layout.cpp checks it
// against data/preprocess.cpp postprocess_logits; tests/cuda/test_way_back.cpp checks this kernel against it).
// v1: 3-D launch (x: file axis 2, y: file axis 1, z: file axis 0; 256-thread blocks of x = min(256, axis 2 rounded up
//     to a warp) by y = 256 / x rows, so a 100-voxel axis 2 keeps 78% of the threads busy), no division per voxel;
//     the grid reads (a 2-voxel window per axis at most when the file is larger than the grid) hit L2: the 128^3 x 2
//     fp32 logits (16 MiB) fit in an H100's 50 MiB L2. Store: 1 byte (+ 4 with the probability) per file voxel.
#include <cuda_runtime.h>

#include <algorithm>

#include "infer/way_back_cuda.h"
#include "kernels/cuda/cuda_utils.cuh"

namespace dex {
namespace {

constexpr int kThreads = 256;

template <bool kFromLogits, bool kProb>
__global__ void __launch_bounds__(kThreads)
    way_back_kernel_v1(WayBackGeometry g, const float* __restrict__ in, uint8_t* __restrict__ mask,
                       float* __restrict__ prob) {
  const int64_t f2 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t f1 = int64_t(blockIdx.y) * blockDim.y + threadIdx.y, f0 = blockIdx.z;
  if (f2 >= g.file[2] || f1 >= g.file[1]) return;
  float bg, fg;
  way_back_voxel(g, in, kFromLogits, f0, f1, f2, &bg, &fg);
  const int64_t i = (f0 * g.file[1] + f1) * g.file[2] + f2;
  mask[i] = fg > bg ? 1 : 0;
  if (kProb) prob[i] = fg;
}

}  // namespace

void way_back_cuda(const WayBackGeometry& g, const float* in, bool from_logits, uint8_t* mask, float* prob,
                   void* stream) {
  for (int a = 0; a < 3; ++a)
    DEX_CHECK(g.grid[a] > 0 && g.oriented[a] > 0 && g.file[a] > 0, "way_back_cuda: non-positive extent on axis ", a,
              " (grid ", g.grid[a], ", oriented ", g.oriented[a], ", file ", g.file[a], ")");
  DEX_CHECK(in && mask, "way_back_cuda: input and mask must not be null");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const unsigned tx = static_cast<unsigned>(std::min<int64_t>(kThreads, (g.file[2] + 31) / 32 * 32));
  const dim3 threads(tx, kThreads / tx);
  const dim3 blocks(static_cast<unsigned>((g.file[2] + tx - 1) / tx),
                    static_cast<unsigned>((g.file[1] + threads.y - 1) / threads.y), static_cast<unsigned>(g.file[0]));
  DEX_CHECK(g.file[0] <= 65535 && (g.file[1] + threads.y - 1) / threads.y <= 65535, "way_back_cuda: file extents ",
            g.file[0], " x ", g.file[1], " exceed the launch's 65535 blocks per grid axis");
  if (from_logits) {
    if (prob) way_back_kernel_v1<true, true><<<blocks, threads, 0, s>>>(g, in, mask, prob);
    else way_back_kernel_v1<true, false><<<blocks, threads, 0, s>>>(g, in, mask, prob);
  } else {
    if (prob) way_back_kernel_v1<false, true><<<blocks, threads, 0, s>>>(g, in, mask, prob);
    else way_back_kernel_v1<false, false><<<blocks, threads, 0, s>>>(g, in, mask, prob);
  }
  DEX_LAUNCH_CHECK("way_back_kernel_v1", s);
}

}  // namespace dex
