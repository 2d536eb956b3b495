// CUDA channel concat / split (CPU reference kernels/cpu/concat.cpp): y[v] = [a[v] (Ca channels), b[v] (Cb)].
// v1: grid-stride over output elements, a template on the storage type T (kernels/cuda/storage.cuh). Pure data
// movement (stored values copied as they are, bit-exact); accumulating gradients add in fp32 and round once to T.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/storage.cuh"

namespace dex {
namespace {
template <class T>
__global__ void concat_fwd_kernel_v1(int64_t voxels, int Ca, int Cb, const T* a, const T* b, T* y) {
  const int C = Ca + Cb;
  const int64_t n = voxels * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = i / C;
    const int c = static_cast<int>(i - v * C);
    y[i] = c < Ca ? a[v * Ca + c] : b[v * Cb + (c - Ca)];
  }
}
template <class T>
__global__ void concat_bwd_kernel_v1(int64_t voxels, int Ca, int Cb, const T* dy, T* da, T* db, bool accumulate) {
  const int C = Ca + Cb;
  const int64_t n = voxels * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = i / C;
    const int c = static_cast<int>(i - v * C);
    T* dst = c < Ca ? (da ? &da[v * Ca + c] : nullptr) : (db ? &db[v * Cb + (c - Ca)] : nullptr);
    if (dst) *dst = accumulate ? from_float<T>(__fadd_rn(to_float(*dst), to_float(dy[i]))) : dy[i];
  }
}

template <class T>
void launch_fwd(int64_t voxels, int Ca, int Cb, const T* a, const T* b, T* y, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && Ca >= 0 && Cb >= 0 && Ca + Cb > 0, "concat_fwd_cuda: bad sizes voxels=", voxels, " Ca=",
            Ca, " Cb=", Cb);
  if (voxels == 0) return;
  DEX_CHECK(y && (Ca == 0 || a) && (Cb == 0 || b), "concat_fwd_cuda: a, b and y must not be null");
  concat_fwd_kernel_v1<T><<<grid_1d(voxels * (Ca + Cb), 256), 256, 0, stream>>>(voxels, Ca, Cb, a, b, y);
  DEX_LAUNCH_CHECK("concat_fwd_kernel_v1", stream);
}
template <class T>
void launch_bwd(int64_t voxels, int Ca, int Cb, const T* dy, T* da, T* db, GradMode mode, cudaStream_t stream) {
  DEX_CHECK(voxels >= 0 && Ca >= 0 && Cb >= 0 && Ca + Cb > 0, "concat_bwd_cuda: bad sizes voxels=", voxels, " Ca=",
            Ca, " Cb=", Cb);
  if (voxels == 0 || (!da && !db)) return;
  DEX_CHECK(dy, "concat_bwd_cuda: dy must not be null");
  concat_bwd_kernel_v1<T><<<grid_1d(voxels * (Ca + Cb), 256), 256, 0, stream>>>(voxels, Ca, Cb, dy, da, db,
                                                                                mode == GradMode::Accumulate);
  DEX_LAUNCH_CHECK("concat_bwd_kernel_v1", stream);
}
}  // namespace

void concat_fwd_cuda(int64_t voxels, int Ca, int Cb, const float* a, const float* b, float* y, cudaStream_t stream) {
  launch_fwd(voxels, Ca, Cb, a, b, y, stream);
}
void concat_bwd_cuda(int64_t voxels, int Ca, int Cb, const float* dy, float* da, float* db, GradMode mode,
                     cudaStream_t stream) {
  launch_bwd(voxels, Ca, Cb, dy, da, db, mode, stream);
}

void concat_fwd_cuda(int64_t voxels, int Ca, int Cb, DType dtype, const void* a, const void* b, void* y,
                     cudaStream_t stream) {
  storage_dispatch(dtype, "concat_fwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_fwd(voxels, Ca, Cb, static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), stream);
  });
}
void concat_bwd_cuda(int64_t voxels, int Ca, int Cb, DType dtype, const void* dy, void* da, void* db, GradMode mode,
                     cudaStream_t stream) {
  storage_dispatch(dtype, "concat_bwd_cuda", [&](auto t) {
    using T = decltype(t);
    launch_bwd(voxels, Ca, Cb, static_cast<const T*>(dy), static_cast<T*>(da), static_cast<T*>(db), mode, stream);
  });
}
}  // namespace dex
