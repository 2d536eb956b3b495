// The backend registry: the ONE place that knows whether CUDA was built (DESIGN.md, STYLE.md §6).
// layers/ and autograd/ ask `backend(device)` for a table of kernels and never #ifdef.
// Every entry is fp32 (the reference precision); `stream` is a cudaStream_t on CUDA (nullptr = default
// stream) and ignored on the CPU. Mixed-precision entries are added by the CUDA backend as they land.
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
};

// The table for `d`; throws dex::Error saying why when that backend is not built or has no device.
const Backend& backend(Device d);
bool backend_available(Device d, std::string* why_not = nullptr);
// Called once by the backends themselves (CPU: always; CUDA: when built and a device is present).
void register_backend(const Backend& b);

}  // namespace dex
