// The non-convolution CUDA ops with a storage dtype (DType::F16 or DType::BF16 as uint16_t bit patterns; F32 is
// accepted too and runs the very kernels of the fp32 launchers in ops_cuda.h). Same kernels, same deterministic
// fixed-order reductions and same checks as the fp32 launchers: each kernel is a template on its storage type
// (kernels/cuda/storage.cuh) that widens on load and does its arithmetic in fp32 (double where the fp32 kernel uses
// double), rounding to nearest even once on store. The CPU references are the fp32 ones (kernels/elementwise.h,
// kernels/dice_ce.h) run on the 16-bit-rounded inputs; the results then differ from them only by summation order and
// the final rounding to the storage type (tests/cuda/test_backend_ops16.cpp).
//
// What is stored in which type:
//   activations and activation gradients (x, y, dy, dx, a, b, logits, dlogits): the storage dtype;
//   per-channel parameters and their gradients (gamma, beta, bias, dgamma, dbeta, dbias) and the instance-norm
//   statistics (mean, rstd): fp32 (they feed fp32 master weights / are tiny);
//   softmax probabilities: fp32 (the inference head writes fp32 probabilities; a 16-bit p near 1 keeps only 2^-11
//   of 1 - p); softmax_bwd therefore takes y in fp32 and dy, dx in the storage dtype;
//   dice_ce: the loss (returned on the host) in double as the fp32 op; dlogits in the storage dtype (pass the loss
//   scale as grad_scale so that small gradients stay out of the fp16 subnormal range).
// GradMode::Accumulate on a 16-bit gradient adds in fp32 and rounds the sum once.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common.h"
#include "kernels/dice_ce.h"
#include "kernels/elementwise.h"

namespace dex {

// ---- instance_norm.cu ----------------------------------------------------------------------------------------------
void instance_norm_fwd_cuda(const InstanceNormParams& p, DType dtype, const void* x, const float* gamma,
                            const float* beta, void* y, float* mean, float* rstd, cudaStream_t stream = nullptr);
void instance_norm_bwd_cuda(const InstanceNormParams& p, DType dtype, const void* x, const void* dy, const float* mean,
                            const float* rstd, const float* gamma, void* dx, float* dgamma, float* dbeta,
                            GradMode mode = GradMode::Overwrite, cudaStream_t stream = nullptr);

// ---- leaky_relu.cu, add.cu, bias_add.cu, concat.cu ------------------------------------------------------------------
void leaky_relu_fwd_cuda(int64_t n, float slope, DType dtype, const void* x, void* y, cudaStream_t stream = nullptr);
void leaky_relu_bwd_cuda(int64_t n, float slope, DType dtype, const void* x, const void* dy, void* dx,
                         GradMode mode = GradMode::Overwrite, cudaStream_t stream = nullptr);
void add_fwd_cuda(int64_t n, DType dtype, const void* a, const void* b, void* y, cudaStream_t stream = nullptr);
void add_bwd_cuda(int64_t n, DType dtype, const void* dy, void* da, void* db, GradMode mode = GradMode::Overwrite,
                  cudaStream_t stream = nullptr);
// y (storage dtype, in place) += bias (fp32); dbias (fp32) += sum over voxels of dy (storage dtype).
void bias_add_fwd_cuda(int64_t voxels, int C, DType dtype, const float* bias, void* y, cudaStream_t stream = nullptr);
void bias_add_bwd_cuda(int64_t voxels, int C, DType dtype, const void* dy, float* dbias,
                       cudaStream_t stream = nullptr);
void concat_fwd_cuda(int64_t voxels, int Ca, int Cb, DType dtype, const void* a, const void* b, void* y,
                     cudaStream_t stream = nullptr);
void concat_bwd_cuda(int64_t voxels, int Ca, int Cb, DType dtype, const void* dy, void* da, void* db,
                     GradMode mode = GradMode::Overwrite, cudaStream_t stream = nullptr);

// ---- softmax.cu: x / dy / dx in the storage dtype, y (probabilities) fp32; argmax over stored logits --------------
void softmax_fwd_cuda(int64_t voxels, int C, DType dtype, const void* x, float* y, cudaStream_t stream = nullptr);
void softmax_bwd_cuda(int64_t voxels, int C, DType dtype, const float* y, const void* dy, void* dx,
                      cudaStream_t stream = nullptr);
void argmax_cuda(int64_t voxels, int C, DType dtype, const void* x, uint8_t* out, cudaStream_t stream = nullptr);

// ---- dice_ce.cu: logits and dlogits in the storage dtype; the loss comes back on the host (synchronises) ---------
DiceCEResult dice_ce_fwd_bwd_cuda(const DiceCEParams& p, DType dtype, const void* logits, const uint8_t* target,
                                  void* dlogits, float grad_scale = 1.0f, cudaStream_t stream = nullptr);

// ---- convert.cu: between the two 16-bit types (through fp32: exact widening, one rounding; NaN stays NaN) -------
void convert_f16_to_bf16_cuda(int64_t n, const uint16_t* src, uint16_t* dst, cudaStream_t stream = nullptr);
void convert_bf16_to_f16_cuda(int64_t n, const uint16_t* src, uint16_t* dst, cudaStream_t stream = nullptr);

}  // namespace dex
