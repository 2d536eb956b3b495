// The CUDA backend table (fp32 entries and the mixed-precision convolutions): registered by
// kernels/backend_init.cpp when a device is present.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_runtime.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/split_cuda.h"

namespace dex {

namespace {
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// ---- mixed precision (autocast): the f16/bf16 launchers of ops_cuda.h, fp32 accumulation -------------------
void to_16(DType dt, int64_t n, const float* src, uint16_t* dst, cudaStream_t s) {
  DEX_CHECK(dt == DType::F16 || dt == DType::BF16, "convert_to_16: dtype must be f16 or bf16, got ", dtype_name(dt));
  if (dt == DType::F16) convert_f32_to_f16_cuda(n, src, dst, s);
  else convert_f32_to_bf16_cuda(n, src, dst, s);
}
void from_16(DType dt, int64_t n, const uint16_t* src, float* dst, cudaStream_t s) {
  DEX_CHECK(dt == DType::F16 || dt == DType::BF16, "convert_from_16: dtype must be f16 or bf16, got ", dtype_name(dt));
  if (dt == DType::F16) convert_f16_to_f32_cuda(n, src, dst, s);
  else convert_bf16_to_f32_cuda(n, src, dst, s);
}

}  // namespace

bool register_cuda_backend(std::string* why_not) {
  std::string why;
  if (cuda_device_count(&why) == 0) {
    if (why_not) *why_not = why;
    return false;
  }
  Backend b;
  b.device = Device::CUDA;
  b.name = "cuda";
  b.allocator = &cuda_allocator();
  // Copies that touch the host complete before returning (pageable host memory); device-to-device stays async.
  b.copy = [](void* dst, Device dd, const void* src, Device sd, size_t bytes, void* s) {
    DEX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, as_stream(s)));
    if (dd == Device::CPU || sd == Device::CPU) DEX_CUDA_CHECK(cudaStreamSynchronize(as_stream(s)));
  };
  b.fill_zero = [](void* dst, size_t bytes, void* s) { DEX_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, as_stream(s))); };
  b.synchronize = [](void* s) { DEX_CUDA_CHECK(cudaStreamSynchronize(as_stream(s))); };
  b.conv3d_workspace_bytes = [](const Conv3dParams& p) { return conv3d_workspace_bytes_cuda(p); };
  b.conv3d_fprop = [](const Conv3dParams& p, const float* x, const float* w, float* y, void* ws, void* s) {
    conv3d_fprop_cuda(p, x, w, y, ws, as_stream(s));
  };
  b.conv3d_dgrad = [](const Conv3dParams& p, const float* dy, const float* w, float* dx, GradMode m, void* ws,
                      void* s) { conv3d_dgrad_cuda(p, dy, w, dx, m, ws, as_stream(s)); };
  b.conv3d_wgrad = [](const Conv3dParams& p, const float* x, const float* dy, float* dw, GradMode m, void* ws,
                      void* s) { conv3d_wgrad_cuda(p, x, dy, dw, m, ws, as_stream(s)); };
  b.conv_transpose3d_fprop = [](const ConvTranspose3dParams& p, const float* x, const float* w, float* y, void* s) {
    conv_transpose3d_fprop_cuda(p, x, w, y, as_stream(s));
  };
  b.conv_transpose3d_dgrad = [](const ConvTranspose3dParams& p, const float* dy, const float* w, float* dx, GradMode m,
                                void* s) { conv_transpose3d_dgrad_cuda(p, dy, w, dx, m, as_stream(s)); };
  b.conv_transpose3d_wgrad = [](const ConvTranspose3dParams& p, const float* x, const float* dy, float* dw, GradMode m,
                                void* s) { conv_transpose3d_wgrad_cuda(p, x, dy, dw, m, as_stream(s)); };
  b.convert_to_16 = [](DType dt, int64_t n, const float* src, uint16_t* dst, void* s) {
    to_16(dt, n, src, dst, as_stream(s));
  };
  b.convert_from_16 = [](DType dt, int64_t n, const uint16_t* src, float* dst, void* s) {
    from_16(dt, n, src, dst, as_stream(s));
  };
  b.conv3d_workspace_bytes_mixed = [](const Conv3dParams& p, DType dt) {
    // dgrad v2's repacked weights or wgrad v2's split partials (the two run one after the other); fprop needs none
    return std::max(conv3d_dgrad_cuda_workspace_bytes(p, dt), conv3d_wgrad_cuda_workspace_bytes(p, dt));
  };
  b.conv3d_fprop_mixed = [](const Conv3dParams& p, DType dt, const uint16_t* x, const uint16_t* w, uint16_t* y,
                            void*, void* s) { conv3d_fprop_cuda(p, dt, x, w, y, ConvVariant::Best, as_stream(s)); };
  b.conv3d_dgrad_mixed = [](const Conv3dParams& p, DType dt, const uint16_t* dy, const uint16_t* w, uint16_t* dx,
                            void* ws, void* s) {
    conv3d_dgrad_cuda(p, dt, dy, w, dx, GradMode::Overwrite, ConvVariant::Best, ws, as_stream(s));
  };
  b.conv3d_wgrad_mixed = [](const Conv3dParams& p, DType dt, const uint16_t* x, const uint16_t* dy, float* dw,
                            GradMode m, void* ws, void* s) {
    conv3d_wgrad_cuda(p, dt, x, dy, dw, m, ConvVariant::Best, ws, as_stream(s));
  };
  b.conv_transpose3d_workspace_bytes_mixed = [](const ConvTranspose3dParams& p, DType dt) {
    // dgrad v2's transposed weights or wgrad v2's split partials (one after the other); fprop needs none
    return std::max(conv_transpose3d_dgrad_cuda_workspace_bytes(p, dt),
                    conv_transpose3d_wgrad_cuda_workspace_bytes(p, dt));
  };
  b.conv_transpose3d_fprop_mixed = [](const ConvTranspose3dParams& p, DType dt, const uint16_t* x, const uint16_t* w,
                                      uint16_t* y, void*, void* s) {
    conv_transpose3d_fprop_cuda(p, dt, x, w, y, ConvVariant::Best, as_stream(s));
  };
  b.conv_transpose3d_dgrad_mixed = [](const ConvTranspose3dParams& p, DType dt, const uint16_t* dy,
                                      const uint16_t* w, uint16_t* dx, void* ws, void* s) {
    conv_transpose3d_dgrad_cuda(p, dt, dy, w, dx, GradMode::Overwrite, ConvVariant::Best, ws, as_stream(s));
  };
  b.conv_transpose3d_wgrad_mixed = [](const ConvTranspose3dParams& p, DType dt, const uint16_t* x,
                                      const uint16_t* dy, float* dw, GradMode m, void* ws, void* s) {
    conv_transpose3d_wgrad_cuda(p, dt, x, dy, dw, m, ConvVariant::Best, ws, as_stream(s));
  };
  b.instance_norm_fwd = [](const InstanceNormParams& p, const float* x, const float* g, const float* be, float* y,
                           float* mean, float* rstd, void* s) {
    instance_norm_fwd_cuda(p, x, g, be, y, mean, rstd, as_stream(s));
  };
  b.instance_norm_bwd = [](const InstanceNormParams& p, const float* x, const float* dy, const float* mean,
                           const float* rstd, const float* g, float* dx, float* dg, float* db, GradMode m, void* s) {
    instance_norm_bwd_cuda(p, x, dy, mean, rstd, g, dx, dg, db, m, as_stream(s));
  };
  b.leaky_relu_fwd = [](int64_t n, float sl, const float* x, float* y, void* s) {
    leaky_relu_fwd_cuda(n, sl, x, y, as_stream(s));
  };
  b.leaky_relu_bwd = [](int64_t n, float sl, const float* x, const float* dy, float* dx, GradMode m, void* s) {
    leaky_relu_bwd_cuda(n, sl, x, dy, dx, m, as_stream(s));
  };
  b.add_fwd = [](int64_t n, const float* a, const float* bb, float* y, void* s) { add_fwd_cuda(n, a, bb, y, as_stream(s)); };
  b.add_bwd = [](int64_t n, const float* dy, float* da, float* db, GradMode m, void* s) {
    add_bwd_cuda(n, dy, da, db, m, as_stream(s));
  };
  b.bias_add_fwd = [](int64_t v, int C, const float* bias, float* y, void* s) {
    bias_add_fwd_cuda(v, C, bias, y, as_stream(s));
  };
  b.bias_add_bwd = [](int64_t v, int C, const float* dy, float* db, void* s) {
    bias_add_bwd_cuda(v, C, dy, db, as_stream(s));
  };
  b.concat_fwd = [](int64_t v, int Ca, int Cb, const float* a, const float* bb, float* y, void* s) {
    concat_fwd_cuda(v, Ca, Cb, a, bb, y, as_stream(s));
  };
  b.concat_bwd = [](int64_t v, int Ca, int Cb, const float* dy, float* da, float* db, GradMode m, void* s) {
    concat_bwd_cuda(v, Ca, Cb, dy, da, db, m, as_stream(s));
  };
  b.softmax_fwd = [](int64_t v, int C, const float* x, float* y, void* s) { softmax_fwd_cuda(v, C, x, y, as_stream(s)); };
  b.softmax_bwd = [](int64_t v, int C, const float* y, const float* dy, float* dx, void* s) {
    softmax_bwd_cuda(v, C, y, dy, dx, as_stream(s));
  };
  b.argmax = [](int64_t v, int C, const float* x, uint8_t* out, void* s) { argmax_cuda(v, C, x, out, as_stream(s)); };
  b.dice_ce_fwd_bwd = [](const DiceCEParams& p, const float* z, const uint8_t* t, float* dz, float gs, void* s) {
    return dice_ce_fwd_bwd_cuda(p, z, t, dz, gs, as_stream(s));
  };
  b.adam_step = [](const AdamParams& a, int64_t step, int64_t n, float* p, const float* g, float* m, float* v,
                   float gs, void* s) { adam_step_cuda(a, step, n, p, g, m, v, gs, as_stream(s)); };
  b.all_finite = [](const float* x, int64_t n, void* s) { return all_finite_cuda(x, n, as_stream(s)); };
  register_backend(b);
  return true;
}

}  // namespace dex
