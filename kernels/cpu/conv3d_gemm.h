// Internal to kernels/cpu: the Gemm variant of conv3d, shared with conv_transpose3d.cpp (a transposed conv is
// a conv3d dgrad, and its gradients are a conv3d fprop and wgrad). Not part of the public kernel API.
#pragma once
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/conv3d.h"

namespace dex {

// Upper bound on the im2col panel of one chunk of output voxels (the workspace holds one per fprop thread;
// a single row longer than this is one chunk).
constexpr size_t kConvChunkBytes = size_t(1) << 20;
// ...but at least this many rows per chunk, as long as the panel stays under kConvMaxChunkBytes.
constexpr int64_t kConvMinChunkRows = 512;
constexpr size_t kConvMaxChunkBytes = size_t(16) << 20;

namespace detail {
// Threads the Gemm fprop splits its chunks over (one panel each); conv3d_cpu_workspace_bytes uses the same, so
// query the workspace under the same OMP_NUM_THREADS / omp_set_num_threads setting as the call.
inline int fprop_threads() { return std::max(1, omp_get_max_threads()); }

// Runs OpenBLAS single-threaded while alive (the caller's OpenMP threads each run their own sgemm).
class BlasSingleThread {
 public:
  BlasSingleThread() : m_saved(openblas_get_num_threads()) { openblas_set_num_threads(1); }
  ~BlasSingleThread() { openblas_set_num_threads(m_saved); }
  BlasSingleThread(const BlasSingleThread&) = delete;
  BlasSingleThread& operator=(const BlasSingleThread&) = delete;

 private:
  int m_saved;
};

// accumulate: false writes the result, true adds it to what the output holds. ws: nullptr or
// conv3d_cpu_workspace_bytes(p) bytes.
void conv3d_fprop_gemm(const Conv3dParams& p, const float* x, const float* w, float* y, bool accumulate, void* ws);
void conv3d_dgrad_gemm(const Conv3dParams& p, const float* dy, const float* w, float* dx, bool accumulate, void* ws);
void conv3d_wgrad_gemm(const Conv3dParams& p, const float* x, const float* dy, float* dw, bool accumulate, void* ws);
}  // namespace detail

}  // namespace dex
