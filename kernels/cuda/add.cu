// CUDA elementwise add (CPU reference kernels/cpu/add.cpp): y = a + b; backward copies (or adds) dy into da and db.
// v1: grid-stride, one element per thread; bit-exact with the CPU.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {
namespace {
__global__ void add_fwd_kernel_v1(int64_t n, const float* a, const float* b, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fadd_rn(a[i], b[i]);
}
__global__ void add_bwd_kernel_v1(int64_t n, const float* dy, float* da, float* db, bool accumulate) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = dy[i];
    if (da) da[i] = accumulate ? __fadd_rn(da[i], g) : g;
    if (db) db[i] = accumulate ? __fadd_rn(db[i], g) : g;
  }
}
}  // namespace

void add_fwd_cuda(int64_t n, const float* a, const float* b, float* y, cudaStream_t stream) {
  DEX_CHECK(n >= 0, "add_fwd_cuda: negative element count ", n);
  if (n == 0) return;
  DEX_CHECK(a && b && y, "add_fwd_cuda: a, b and y must not be null");
  add_fwd_kernel_v1<<<grid_1d(n, 256), 256, 0, stream>>>(n, a, b, y);
  DEX_LAUNCH_CHECK("add_fwd_kernel_v1", stream);
}
void add_bwd_cuda(int64_t n, const float* dy, float* da, float* db, GradMode mode, cudaStream_t stream) {
  DEX_CHECK(n >= 0, "add_bwd_cuda: negative element count ", n);
  if (n == 0 || (!da && !db)) return;
  DEX_CHECK(dy, "add_bwd_cuda: dy must not be null");
  add_bwd_kernel_v1<<<grid_1d(n, 256), 256, 0, stream>>>(n, dy, da, db, mode == GradMode::Accumulate);
  DEX_LAUNCH_CHECK("add_bwd_kernel_v1", stream);
}
}  // namespace dex
