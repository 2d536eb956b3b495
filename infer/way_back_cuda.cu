// The way back on the GPU (issue 8): network output on the grid -> mask (+ spleen probability) in the file's
// geometry, one thread per FILE voxel, written in file order (coalesced stores); the index math is the DEX_HD code of
// infer/way_back_cuda.h, shared with the CPU reference way_back_cpu (tests/infer/test_way_back_layout.cpp checks it
// against data/preprocess.cpp postprocess_logits; tests/cuda/test_way_back.cpp checks this kernel against it).
// v1: 3-D launch (x: file axis 2 in blocks of 256, y: file axis 1, z: file axis 0), no integer division per voxel;
//     the grid reads (a 2-voxel window per axis at most when the file is larger than the grid) hit L2: the 128^3 x 2
//     fp32 logits (16 MiB) fit in an H100's 50 MiB L2. Store: 1 byte (+ 4 with the probability) per file voxel.
#include <cuda_runtime.h>

#include "infer/way_back_cuda.h"
#include "kernels/cuda/cuda_utils.cuh"

namespace dex {
namespace {

constexpr int kThreads = 256;

template <bool kFromLogits, bool kProb>
__global__ void __launch_bounds__(kThreads)
    way_back_kernel_v1(WayBackGeometry g, const float* __restrict__ in, uint8_t* __restrict__ mask,
                       float* __restrict__ prob) {
  const int64_t f2 = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (f2 >= g.file[2]) return;
  const int64_t f1 = blockIdx.y, f0 = blockIdx.z;
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
  DEX_CHECK(g.file[0] <= 65535 && g.file[1] <= 65535, "way_back_cuda: file extents ", g.file[0], " x ", g.file[1],
            " exceed the launch's 65535 blocks per grid axis");
  DEX_CHECK(in && mask, "way_back_cuda: input and mask must not be null");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const dim3 blocks(static_cast<unsigned>((g.file[2] + kThreads - 1) / kThreads), static_cast<unsigned>(g.file[1]),
                    static_cast<unsigned>(g.file[0]));
  if (from_logits) {
    if (prob) way_back_kernel_v1<true, true><<<blocks, kThreads, 0, s>>>(g, in, mask, prob);
    else way_back_kernel_v1<true, false><<<blocks, kThreads, 0, s>>>(g, in, mask, prob);
  } else {
    if (prob) way_back_kernel_v1<false, true><<<blocks, kThreads, 0, s>>>(g, in, mask, prob);
    else way_back_kernel_v1<false, false><<<blocks, kThreads, 0, s>>>(g, in, mask, prob);
  }
  DEX_LAUNCH_CHECK("way_back_kernel_v1", s);
}

}  // namespace dex
