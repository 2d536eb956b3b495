// The split (whole-GPU) reductions' extra entry points (kernels/cuda/reduce_split.h has the scheme and its math), the
// per-stream workspace the table entry points use, and the device finite check. All pointers are device pointers.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/common.h"
#include "kernels/elementwise.h"

namespace dex {

// ---- instance_norm.cu ---------------------------------------------------------------------------------------------
// The instance_norm_{fwd,bwd}_cuda entry points of ops_cuda.h / ops16_cuda.h run the split variant with a workspace
// from stream_workspace(). These take the workspace explicitly (instance_norm_workspace_bytes_cuda(p) bytes, 8-byte
// aligned; the same size serves fwd and bwd; one op at a time per workspace).
size_t instance_norm_workspace_bytes_cuda(const InstanceNormParams& p);
void instance_norm_fwd_split_cuda(const InstanceNormParams& p, DType dtype, const void* x, const float* gamma,
                                  const float* beta, void* y, float* mean, float* rstd, void* workspace,
                                  cudaStream_t stream);
void instance_norm_bwd_split_cuda(const InstanceNormParams& p, DType dtype, const void* x, const void* dy,
                                  const float* mean, const float* rstd, const float* gamma, void* dx, float* dgamma,
                                  float* dbeta, GradMode mode, void* workspace, cudaStream_t stream);
// v1, one block per (32 channels, sample): kept for comparison (bench/cuda/bench_ops16.cu) and as a second oracle.
void instance_norm_fwd_v1_cuda(const InstanceNormParams& p, DType dtype, const void* x, const float* gamma,
                               const float* beta, void* y, float* mean, float* rstd, cudaStream_t stream);
void instance_norm_bwd_v1_cuda(const InstanceNormParams& p, DType dtype, const void* x, const void* dy,
                               const float* mean, const float* rstd, const float* gamma, void* dx, float* dgamma,
                               float* dbeta, GradMode mode, cudaStream_t stream);

// ---- split_workspace.cpp ------------------------------------------------------------------------------------------
// A device scratch of at least `bytes` bytes (256-byte aligned) for ops enqueued on `stream`, from cuda_allocator():
// one grow-only block per stream handle, so ops on one stream (ordered) share it and ops on different streams never
// do. Blocks are never freed while the process runs (a larger request keeps the old block alive too), so a pointer
// baked into a captured CUDA graph stays valid; growth calls the allocator, so warm up before capturing.
void* stream_workspace(cudaStream_t stream, size_t bytes);

// ---- finite.cu ----------------------------------------------------------------------------------------------------
// True when all n floats are finite: one kernel sets a device flag, one 4-byte copy back (synchronises `stream`).
bool all_finite_cuda(const float* x, int64_t n, cudaStream_t stream = nullptr);

}  // namespace dex
