// CUDA elementwise add (CPU reference kernels/cpu/add.cpp): y = a + b; backward copies (or adds) dy into da and db.
// v1: grid-stride, one element per thread, a template on the storage type T (kernels/cuda/storage.cuh): one fp32 add
// rounded once to T, so bit-exact with the CPU on the same inputs followed by the same rounding.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/storage.cuh"

namespace dex {
namespace {
template <class T>
__global__ void add_fwd_kernel_v1(int64_t n, const T* a, const T* b, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_float<T>(__fadd_rn(to_float(a[i]), to_float(b[i])));
}
template <class T>
__global__ void add_bwd_kernel_v1(int64_t n, const T* dy, T* da, T* db, bool accumulate) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const T g = dy[i];  // overwrite: a plain copy of the stored value
    if (da) da[i] = accumulate ? from_float<T>(__fadd_rn(to_float(da[i]), to_float(g))) : g;
    if (db) db[i] = accumulate ? from_float<T>(__fadd_rn(to_float(db[i]), to_float(g))) : g;
  }
}

template <class T>
void launch_fwd(int64_t n, const T* a, const T* b, T* y, cudaStream_t stream) {
  DEX_CHECK(n >= 0, "add_fwd_cuda: negative element count ", n);
  if (n == 0) return;
  DEX_CHECK(a && b && y, "add_fwd_cuda: a, b and y must not be null");
  add_fwd_kernel_v1<T><<<grid_1d(n, 256), 256, 0, stream>>>(n, a, b, y);
  DEX_LAUNCH_CHECK("add_fwd_kernel_v1", stream);
}
template <class T>
void launch_bwd(int64_t n, const T* dy, T* da, T* db, GradMode mode, cudaStream_t stream) {
  DEX_CHECK(n >= 0, "add_bwd_cuda: negative element count ", n);
  if (n == 0 || (!da && !db)) return;
  DEX_CHECK(dy, "add_bwd_cuda: dy must not be null");
  add_bwd_kernel_v1<T><<<grid_1d(n, 256), 256, 0, stream>>>(n, dy, da, db, mode == GradMode::Accumulate);
  DEX_LAUNCH_CHECK("add_bwd_kernel_v1", stream);
}
}  // namespace

void add_fwd_cuda(int64_t n, const float* a, const float* b, float* y, cudaStream_t stream) {
  launch_fwd(n, a, b, y, stream);
}
void add_bwd_cuda(int64_t n, const float* dy, float* da, float* db, GradMode mode, cudaStream_t stream) {
  launch_bwd(n, dy, da, db, mode, stream);
}

void add_fwd_cuda(int64_t n, DType dtype, const void* a, const void* b, void* y, cudaStream_t stream) {
  storage_dispatch(dtype, "add_fwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_fwd(n, static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), stream);
  });
}
void add_bwd_cuda(int64_t n, DType dtype, const void* dy, void* da, void* db, GradMode mode, cudaStream_t stream) {
  storage_dispatch(dtype, "add_bwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_bwd(n, static_cast<const T*>(dy), static_cast<T*>(da), static_cast<T*>(db), mode, stream);
  });
}
}  // namespace dex
