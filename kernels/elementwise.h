// Small ops of the DynUNet, NDHWC, fp32 on the CPU. "voxels" = N*D*H*W (all samples), C = channels.
#pragma once
#include <cstdint>
#include "kernels/common.h"

namespace dex {

// ---- instance norm (biased variance, per sample and channel over the S spatial voxels) ----------
struct InstanceNormParams {
  int N = 1, C = 0;
  int64_t S = 0;        // spatial voxels per sample
  float eps = 1e-5f;
  bool affine = false;  // gamma/beta used (and their gradients produced) only when true
};
// y may alias x. mean and rstd ([N*C]) are saved for the backward.
void instance_norm_fwd_cpu(const InstanceNormParams& p, const float* x, const float* gamma, const float* beta,
                           float* y, float* mean, float* rstd);
// dx is written per `mode`; dgamma/dbeta (affine only) accumulate.
void instance_norm_bwd_cpu(const InstanceNormParams& p, const float* x, const float* dy, const float* mean,
                           const float* rstd, const float* gamma, float* dx, float* dgamma, float* dbeta,
                           GradMode mode = GradMode::Overwrite);

// ---- LeakyReLU (slope 0.01 in DynUNet) ---------------------------------------------------------
void leaky_relu_fwd_cpu(int64_t n, float slope, const float* x, float* y);  // y may alias x
// x: the forward input (or output: same sign for slope > 0).
void leaky_relu_bwd_cpu(int64_t n, float slope, const float* x, const float* dy, float* dx,
                        GradMode mode = GradMode::Overwrite);

// ---- add ----------------------------------------------------------------------------------------
void add_fwd_cpu(int64_t n, const float* a, const float* b, float* y);  // y may alias a or b
// da, db receive dy per `mode` (either may be null).
void add_bwd_cpu(int64_t n, const float* dy, float* da, float* db, GradMode mode = GradMode::Overwrite);

// ---- bias (output head) -------------------------------------------------------------------------
void bias_add_fwd_cpu(int64_t voxels, int C, const float* bias, float* y);  // in place
void bias_add_bwd_cpu(int64_t voxels, int C, const float* dy, float* dbias);  // dbias accumulates

// ---- channel concat / split (first a's channels, then b's) --------------------------------------
void concat_fwd_cpu(int64_t voxels, int Ca, int Cb, const float* a, const float* b, float* y);
void concat_bwd_cpu(int64_t voxels, int Ca, int Cb, const float* dy, float* da, float* db,
                    GradMode mode = GradMode::Overwrite);

// ---- softmax / argmax over channels -------------------------------------------------------------
void softmax_fwd_cpu(int64_t voxels, int C, const float* x, float* y);
void softmax_bwd_cpu(int64_t voxels, int C, const float* y, const float* dy, float* dx);
// Ties go to the lowest channel index (torch.argmax).
void argmax_cpu(int64_t voxels, int C, const float* x, uint8_t* out);

// ---- dtype conversion ---------------------------------------------------------------------------
void convert_f32_to_f16_cpu(int64_t n, const float* src, uint16_t* dst);
void convert_f16_to_f32_cpu(int64_t n, const uint16_t* src, float* dst);
void convert_f32_to_bf16_cpu(int64_t n, const float* src, uint16_t* dst);
void convert_bf16_to_f32_cpu(int64_t n, const uint16_t* src, float* dst);

}  // namespace dex
