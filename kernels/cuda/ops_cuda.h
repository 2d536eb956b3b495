// The CUDA backend's ops, named after their CPU references (kernels/cpu) as <op>_<pass>_cuda. All pointers are
// device pointers unless a comment says otherwise; every launcher takes the stream last, checks its inputs on the
// host and ends with DEX_LAUNCH_CHECK. Reductions are deterministic (fixed-order block reductions, no float
// atomics), so running an op twice gives bitwise-identical results.
//
// Low-precision storage (DType::F16 / DType::BF16, uint16_t bit patterns) accumulates in fp32. Activations and
// activation gradients are stored in the storage dtype; weight gradients are fp32 (they feed fp32 master weights).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "kernels/adam.h"
#include "kernels/conv3d.h"
#include "kernels/conv_transpose3d.h"
#include "kernels/dice_ce.h"
#include "kernels/elementwise.h"

namespace dex {

// ---- instance_norm.cu, leaky_relu.cu, add.cu, bias_add.cu, concat.cu, softmax.cu, convert.cu ---------------
void instance_norm_fwd_cuda(const InstanceNormParams& p, const float* x, const float* gamma, const float* beta,
                            float* y, float* mean, float* rstd, cudaStream_t stream = nullptr);
void instance_norm_bwd_cuda(const InstanceNormParams& p, const float* x, const float* dy, const float* mean,
                            const float* rstd, const float* gamma, float* dx, float* dgamma, float* dbeta,
                            GradMode mode = GradMode::Overwrite, cudaStream_t stream = nullptr);
void leaky_relu_fwd_cuda(int64_t n, float slope, const float* x, float* y, cudaStream_t stream = nullptr);
void leaky_relu_bwd_cuda(int64_t n, float slope, const float* x, const float* dy, float* dx,
                         GradMode mode = GradMode::Overwrite, cudaStream_t stream = nullptr);
void add_fwd_cuda(int64_t n, const float* a, const float* b, float* y, cudaStream_t stream = nullptr);
void add_bwd_cuda(int64_t n, const float* dy, float* da, float* db, GradMode mode = GradMode::Overwrite,
                  cudaStream_t stream = nullptr);
void bias_add_fwd_cuda(int64_t voxels, int C, const float* bias, float* y, cudaStream_t stream = nullptr);
void bias_add_bwd_cuda(int64_t voxels, int C, const float* dy, float* dbias, cudaStream_t stream = nullptr);
void concat_fwd_cuda(int64_t voxels, int Ca, int Cb, const float* a, const float* b, float* y,
                     cudaStream_t stream = nullptr);
void concat_bwd_cuda(int64_t voxels, int Ca, int Cb, const float* dy, float* da, float* db,
                     GradMode mode = GradMode::Overwrite, cudaStream_t stream = nullptr);
void softmax_fwd_cuda(int64_t voxels, int C, const float* x, float* y, cudaStream_t stream = nullptr);
void softmax_bwd_cuda(int64_t voxels, int C, const float* y, const float* dy, float* dx,
                      cudaStream_t stream = nullptr);
void argmax_cuda(int64_t voxels, int C, const float* x, uint8_t* out, cudaStream_t stream = nullptr);
void convert_f32_to_f16_cuda(int64_t n, const float* src, uint16_t* dst, cudaStream_t stream = nullptr);
void convert_f16_to_f32_cuda(int64_t n, const uint16_t* src, float* dst, cudaStream_t stream = nullptr);
void convert_f32_to_bf16_cuda(int64_t n, const float* src, uint16_t* dst, cudaStream_t stream = nullptr);
void convert_bf16_to_f32_cuda(int64_t n, const uint16_t* src, float* dst, cudaStream_t stream = nullptr);

// ---- dice_ce.cu: the loss comes back on the host (the call synchronises `stream`). -----------------
DiceCEResult dice_ce_fwd_bwd_cuda(const DiceCEParams& p, const float* logits, const uint8_t* target, float* dlogits,
                                  float grad_scale = 1.0f, cudaStream_t stream = nullptr);

// ---- adam.cu ------------------------------------------------------------------------------------------
void adam_step_cuda(const AdamParams& a, int64_t step, int64_t n, float* param, const float* grad, float* m, float* v,
                    float grad_scale = 1.0f, cudaStream_t stream = nullptr);

// ---- conv3d.cu ----------------------------------------------------------------------------------------
// Variants (STYLE.md §1; the file header of conv3d.cu lists them):
//   Direct: v1, one thread per output voxel x 8 output channels (fp32 accumulate), the readable oracle.
//   Mma:    v2, implicit GEMM on tensor cores, mma.sync.m16n8k16 + cp.async (3 stages) + ldmatrix (fprop; dgrad at
//           strides 1 and 2 as one GEMM per output parity class; wgrad as a split-voxel GEMM with an ordered
//           reduction; transposed conv fprop / dgrad / wgrad with kernel == stride).
//   Wgmma:  v3, conv3d fprop only, Hopper wgmma.mma_async from swizzled shared memory (sm_90a; conv3d_wgmma.h).
//           Best takes it on sm_90 where conv3d_fprop_best_is_wgmma() says so (C >= 64 or K >= 64: faster
//           than v2 there on an H100, 2026-11-27).
//   Best:   the fastest variant that supports the case, as measured.
enum class ConvVariant { Best, Direct, Mma, Wgmma };
const char* conv_variant_name(ConvVariant v);

// fp32 (the Backend table's precision): direct kernels, deterministic; no workspace.
size_t conv3d_workspace_bytes_cuda(const Conv3dParams& p);
void conv3d_fprop_cuda(const Conv3dParams& p, const float* x, const float* w, float* y, void* workspace = nullptr,
                       cudaStream_t stream = nullptr);
void conv3d_dgrad_cuda(const Conv3dParams& p, const float* dy, const float* w, float* dx,
                       GradMode mode = GradMode::Overwrite, void* workspace = nullptr, cudaStream_t stream = nullptr);
void conv3d_wgrad_cuda(const Conv3dParams& p, const float* x, const float* dy, float* dw,
                       GradMode mode = GradMode::Accumulate, void* workspace = nullptr, cudaStream_t stream = nullptr);

// fp16 / bf16 storage (dtype F16 or BF16), fp32 accumulation. x, w, y, dy, dx in the storage dtype; dw is fp32.
// `*_supports` is the capability check (why receives the reason when false); the launchers throw dex::Error
// with that reason for an unsupported case.
bool conv3d_fprop_cuda_supports(const Conv3dParams& p, DType dtype, ConvVariant v = ConvVariant::Best,
                                std::string* why = nullptr);
void conv3d_fprop_cuda(const Conv3dParams& p, DType dtype, const void* x, const void* w, void* y,
                       ConvVariant v = ConvVariant::Best, cudaStream_t stream = nullptr);
// dgrad v2 (strides 1 / 2, dilation 1, C and K multiples of 32) repacks the weights into `workspace`
// (conv3d_dgrad_cuda_workspace_bytes; 0 when v2 does not apply). Best without a workspace runs v1.
size_t conv3d_dgrad_cuda_workspace_bytes(const Conv3dParams& p, DType dtype);
bool conv3d_dgrad_cuda_supports(const Conv3dParams& p, DType dtype, ConvVariant v = ConvVariant::Best,
                                std::string* why = nullptr);
void conv3d_dgrad_cuda(const Conv3dParams& p, DType dtype, const void* dy, const void* w, void* dx, GradMode mode,
                       ConvVariant v = ConvVariant::Best, void* workspace = nullptr, cudaStream_t stream = nullptr);
bool conv3d_wgrad_cuda_supports(const Conv3dParams& p, DType dtype, ConvVariant v = ConvVariant::Best,
                                std::string* why = nullptr);
// wgrad v2 (C and K multiples of 32, < 2^31 output voxels) writes fp32 partials of a fixed number of voxel splits
// into `workspace` (conv3d_wgrad_cuda_workspace_bytes) and adds them in order (deterministic). Where v2 does not
// apply but the weights are small (K x taps x C <= 4096, K + taps x C <= 512: the C = 3 input convs, the K = 2 head),
// Best with that workspace runs v1s, the same split scheme on CUDA cores. Best without a workspace runs v1. NOTE: the workspace argument sits before the stream, as in dgrad.
size_t conv3d_wgrad_cuda_workspace_bytes(const Conv3dParams& p, DType dtype);
// fp32 fprop as a shared-memory tiled implicit GEMM on CUDA cores (conv3d_f32_tiled.cu; C % 16 == 0, K % 32 == 0,
// 16-byte aligned pointers). Not yet run on a GPU: the fp32 paths keep v1 until the tests and benchmark rows of the
// next GPU session have checked and timed it; DEX_F32_CONV=tiled (read once) routes the fp32 fprop above through it
// where it applies, for that trial (scripts/gpu-check.sh, stage 4).
bool conv3d_fprop_f32_tiled_supports(const Conv3dParams& p, std::string* why = nullptr);
void conv3d_fprop_f32_tiled_cuda(const Conv3dParams& p, const float* x, const float* w, float* y,
                                 cudaStream_t stream = nullptr);
void conv3d_wgrad_cuda(const Conv3dParams& p, DType dtype, const void* x, const void* dy, float* dw, GradMode mode,
                       ConvVariant v = ConvVariant::Best, void* workspace = nullptr, cudaStream_t stream = nullptr);
// The old signature (stream right after the variant) would silently pass the stream as the workspace: a compile error.
void conv3d_wgrad_cuda(const Conv3dParams& p, DType dtype, const void* x, const void* dy, float* dw, GradMode mode,
                       ConvVariant v, cudaStream_t stream) = delete;

// ---- conv_transpose3d.cu (fp32, direct, deterministic) ---------------------------------------------------
void conv_transpose3d_fprop_cuda(const ConvTranspose3dParams& p, const float* x, const float* w, float* y,
                                 cudaStream_t stream = nullptr);
void conv_transpose3d_dgrad_cuda(const ConvTranspose3dParams& p, const float* dy, const float* w, float* dx,
                                 GradMode mode = GradMode::Overwrite, cudaStream_t stream = nullptr);
void conv_transpose3d_wgrad_cuda(const ConvTranspose3dParams& p, const float* x, const float* dy, float* dw,
                                 GradMode mode = GradMode::Accumulate, cudaStream_t stream = nullptr);
// f32 / f16 / bf16 storage, fp32 accumulation. Variants: Direct (v1, any shape) and Mma (v2: kernel == stride as
// one GEMM on the conv3d v2 kernel, M = input voxels, N = K x taps, K-dim = C; f16/bf16, C % 32 == 0, K x taps % 32 == 0).
bool conv_transpose3d_fprop_cuda_supports(const ConvTranspose3dParams& p, DType dtype, ConvVariant v = ConvVariant::Best,
                                          std::string* why = nullptr);
void conv_transpose3d_fprop_cuda(const ConvTranspose3dParams& p, DType dtype, const void* x, const void* w, void* y,
                                 ConvVariant v = ConvVariant::Best, cudaStream_t stream = nullptr);
// Backward, f32 / f16 / bf16 storage (dw fp32). Direct: v1, any shape. Mma (v2, f16/bf16, kernel == stride, C and K
// multiples of 32): dgrad = a conv3d fprop of dy with kernel = stride (weights transposed into `workspace`), wgrad =
// a conv3d wgrad v2 with x and dy swapped (split partials in `workspace`, ordered reduction). Best without a
// workspace runs v1.
size_t conv_transpose3d_dgrad_cuda_workspace_bytes(const ConvTranspose3dParams& p, DType dtype);
bool conv_transpose3d_dgrad_cuda_supports(const ConvTranspose3dParams& p, DType dtype, ConvVariant v = ConvVariant::Best,
                                          std::string* why = nullptr);
void conv_transpose3d_dgrad_cuda(const ConvTranspose3dParams& p, DType dtype, const void* dy, const void* w, void* dx,
                                 GradMode mode, ConvVariant v = ConvVariant::Best, void* workspace = nullptr,
                                 cudaStream_t stream = nullptr);
size_t conv_transpose3d_wgrad_cuda_workspace_bytes(const ConvTranspose3dParams& p, DType dtype);
bool conv_transpose3d_wgrad_cuda_supports(const ConvTranspose3dParams& p, DType dtype, ConvVariant v = ConvVariant::Best,
                                          std::string* why = nullptr);
void conv_transpose3d_wgrad_cuda(const ConvTranspose3dParams& p, DType dtype, const void* x, const void* dy, float* dw,
                                 GradMode mode, ConvVariant v = ConvVariant::Best, void* workspace = nullptr,
                                 cudaStream_t stream = nullptr);

// ---- click_guidance.cu ------------------------------------------------------------------------------------
// The DeepEdit guidance heatmap of one label (spec §3.9) on a D x H x W grid (x fastest = W): every point
// (host array of n_points (d, h, w) triples) with any coordinate < 0 is skipped, the others are clamped into the
// grid and set to 1; the volume is smoothed by the separable 25-tap erf-Gaussian (sigma, truncated = 4, zero
// padding) and min-max normalised (a constant result: all 1). No valid point: all zeros. `work`: D*H*W floats.
void click_heatmap_cuda(int D, int H, int W, const int* points_host, int n_points, float sigma, float* out,
                        float* work, cudaStream_t stream = nullptr);

}  // namespace dex
