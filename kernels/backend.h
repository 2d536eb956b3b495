// The backend registry: the ONE place that knows whether CUDA was built (DESIGN.md, STYLE.md §6).
// layers/ and autograd/ ask `backend(device)` for a table of kernels and never #ifdef.
// Every entry is fp32 (the reference precision) except the `_mixed` ones and the 16-bit conversions (autocast);
// `stream` is a cudaStream_t on CUDA (nullptr = default stream) and ignored on the CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include "kernels/adam.h"
#include "kernels/arena.h"
#include "kernels/common.h"
#include "kernels/conv3d.h"
#include "kernels/conv_transpose3d.h"
#include "kernels/dice_ce.h"
#include "kernels/elementwise.h"

namespace dex {

struct Backend {
  Device device = Device::CPU;
  std::string name;
  BlockAllocator* allocator = nullptr;

  // memory
  void (*copy)(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes, void* stream) = nullptr;
  void (*fill_zero)(void* dst, size_t bytes, void* stream) = nullptr;
  void (*synchronize)(void* stream) = nullptr;

  // convolution (workspace: conv3d_workspace_bytes(p) bytes, may be nullptr on the CPU)
  size_t (*conv3d_workspace_bytes)(const Conv3dParams& p) = nullptr;
  void (*conv3d_fprop)(const Conv3dParams&, const float* x, const float* w, float* y, void* ws, void* stream) = nullptr;
  void (*conv3d_dgrad)(const Conv3dParams&, const float* dy, const float* w, float* dx, GradMode, void* ws,
                       void* stream) = nullptr;
  void (*conv3d_wgrad)(const Conv3dParams&, const float* x, const float* dy, float* dw, GradMode, void* ws,
                       void* stream) = nullptr;
  void (*conv_transpose3d_fprop)(const ConvTranspose3dParams&, const float* x, const float* w, float* y,
                                 void* stream) = nullptr;
  void (*conv_transpose3d_dgrad)(const ConvTranspose3dParams&, const float* dy, const float* w, float* dx, GradMode,
                                 void* stream) = nullptr;
  void (*conv_transpose3d_wgrad)(const ConvTranspose3dParams&, const float* x, const float* dy, float* dw, GradMode,
                                 void* stream) = nullptr;

  // mixed precision (autocast, DESIGN.md: fp16/bf16 operands, fp32 accumulation). A 16-bit tensor is uint16_t bit
  // patterns of `dt` (DType::F16 or DType::BF16). Activation outputs (y, dx) are 16-bit and overwritten; weight
  // gradients are fp32 and follow the GradMode. nullptr on a backend without mixed precision. The CPU backend
  // emulates them exactly: widen the 16-bit operands to fp32, run the fp32 kernels, round the output.
  void (*convert_to_16)(DType dt, int64_t n, const float* src, uint16_t* dst, void* stream) = nullptr;
  void (*convert_from_16)(DType dt, int64_t n, const uint16_t* src, float* dst, void* stream) = nullptr;
  size_t (*conv3d_workspace_bytes_mixed)(const Conv3dParams&, DType dt) = nullptr;
  void (*conv3d_fprop_mixed)(const Conv3dParams&, DType dt, const uint16_t* x, const uint16_t* w, uint16_t* y,
                             void* ws, void* stream) = nullptr;
  void (*conv3d_dgrad_mixed)(const Conv3dParams&, DType dt, const uint16_t* dy, const uint16_t* w, uint16_t* dx,
                             void* ws, void* stream) = nullptr;
  void (*conv3d_wgrad_mixed)(const Conv3dParams&, DType dt, const uint16_t* x, const uint16_t* dy, float* dw, GradMode,
                             void* ws, void* stream) = nullptr;
  size_t (*conv_transpose3d_workspace_bytes_mixed)(const ConvTranspose3dParams&, DType dt) = nullptr;
  void (*conv_transpose3d_fprop_mixed)(const ConvTranspose3dParams&, DType dt, const uint16_t* x, const uint16_t* w,
                                       uint16_t* y, void* ws, void* stream) = nullptr;
  void (*conv_transpose3d_dgrad_mixed)(const ConvTranspose3dParams&, DType dt, const uint16_t* dy, const uint16_t* w,
                                       uint16_t* dx, void* ws, void* stream) = nullptr;
  void (*conv_transpose3d_wgrad_mixed)(const ConvTranspose3dParams&, DType dt, const uint16_t* x, const uint16_t* dy,
                                       float* dw, GradMode, void* ws, void* stream) = nullptr;

  // normalisation, activation, elementwise
  void (*instance_norm_fwd)(const InstanceNormParams&, const float* x, const float* gamma, const float* beta, float* y,
                            float* mean, float* rstd, void* stream) = nullptr;
  void (*instance_norm_bwd)(const InstanceNormParams&, const float* x, const float* dy, const float* mean,
                            const float* rstd, const float* gamma, float* dx, float* dgamma, float* dbeta, GradMode,
                            void* stream) = nullptr;
  void (*leaky_relu_fwd)(int64_t n, float slope, const float* x, float* y, void* stream) = nullptr;
  void (*leaky_relu_bwd)(int64_t n, float slope, const float* x, const float* dy, float* dx, GradMode,
                         void* stream) = nullptr;
  void (*add_fwd)(int64_t n, const float* a, const float* b, float* y, void* stream) = nullptr;
  void (*add_bwd)(int64_t n, const float* dy, float* da, float* db, GradMode, void* stream) = nullptr;
  void (*bias_add_fwd)(int64_t voxels, int C, const float* bias, float* y, void* stream) = nullptr;
  void (*bias_add_bwd)(int64_t voxels, int C, const float* dy, float* dbias, void* stream) = nullptr;
  void (*concat_fwd)(int64_t voxels, int Ca, int Cb, const float* a, const float* b, float* y, void* stream) = nullptr;
  void (*concat_bwd)(int64_t voxels, int Ca, int Cb, const float* dy, float* da, float* db, GradMode,
                     void* stream) = nullptr;
  void (*softmax_fwd)(int64_t voxels, int C, const float* x, float* y, void* stream) = nullptr;
  void (*softmax_bwd)(int64_t voxels, int C, const float* y, const float* dy, float* dx, void* stream) = nullptr;
  void (*argmax)(int64_t voxels, int C, const float* x, uint8_t* out, void* stream) = nullptr;

  // loss and optimiser (the loss result is returned on the host; target lives on the backend's device)
  DiceCEResult (*dice_ce_fwd_bwd)(const DiceCEParams&, const float* logits, const uint8_t* target, float* dlogits,
                                  float grad_scale, void* stream) = nullptr;
  void (*adam_step)(const AdamParams&, int64_t step, int64_t n, float* param, const float* grad, float* m, float* v,
                    float grad_scale, void* stream) = nullptr;
  // True when all n values of x (on this device) are finite; synchronises. nullptr on the CPU (callers loop on the
  // host there).
  bool (*all_finite)(const float* x, int64_t n, void* stream) = nullptr;
};

// The table for `d`; throws dex::Error saying why when that backend is not built or has no device.
const Backend& backend(Device d);
bool backend_available(Device d, std::string* why_not = nullptr);
// Called once by the backends themselves (CPU: always; CUDA: when built and a device is present).
void register_backend(const Backend& b);

}  // namespace dex
