// The CPU backend table: fp32 kernels (the Gemm fast path for convolutions).
#include <cstring>

#include "kernels/backend.h"

namespace dex {

void register_cpu_backend() {
  Backend b;
  b.device = Device::CPU;
  b.name = "cpu";
  b.allocator = &host_allocator();
  b.copy = [](void* dst, Device, const void* src, Device, size_t bytes, void*) { std::memcpy(dst, src, bytes); };
  b.fill_zero = [](void* dst, size_t bytes, void*) { std::memset(dst, 0, bytes); };
  b.synchronize = [](void*) {};
  b.conv3d_workspace_bytes = [](const Conv3dParams& p) { return conv3d_cpu_workspace_bytes(p); };
  b.conv3d_fprop = [](const Conv3dParams& p, const float* x, const float* w, float* y, void* ws, void*) {
    conv3d_fprop_cpu(p, x, w, y, CpuConvImpl::Gemm, ws);
  };
  b.conv3d_dgrad = [](const Conv3dParams& p, const float* dy, const float* w, float* dx, GradMode m, void* ws, void*) {
    conv3d_dgrad_cpu(p, dy, w, dx, m, CpuConvImpl::Gemm, ws);
  };
  b.conv3d_wgrad = [](const Conv3dParams& p, const float* x, const float* dy, float* dw, GradMode m, void* ws, void*) {
    conv3d_wgrad_cpu(p, x, dy, dw, m, CpuConvImpl::Gemm, ws);
  };
  b.conv_transpose3d_fprop = [](const ConvTranspose3dParams& p, const float* x, const float* w, float* y, void*) {
    conv_transpose3d_fprop_cpu(p, x, w, y);
  };
  b.conv_transpose3d_dgrad = [](const ConvTranspose3dParams& p, const float* dy, const float* w, float* dx, GradMode m,
                                void*) { conv_transpose3d_dgrad_cpu(p, dy, w, dx, m); };
  b.conv_transpose3d_wgrad = [](const ConvTranspose3dParams& p, const float* x, const float* dy, float* dw, GradMode m,
                                void*) { conv_transpose3d_wgrad_cpu(p, x, dy, dw, m); };
  b.instance_norm_fwd = [](const InstanceNormParams& p, const float* x, const float* g, const float* be, float* y,
                           float* mean, float* rstd, void*) { instance_norm_fwd_cpu(p, x, g, be, y, mean, rstd); };
  b.instance_norm_bwd = [](const InstanceNormParams& p, const float* x, const float* dy, const float* mean,
                           const float* rstd, const float* g, float* dx, float* dg, float* db, GradMode m, void*) {
    instance_norm_bwd_cpu(p, x, dy, mean, rstd, g, dx, dg, db, m);
  };
  b.leaky_relu_fwd = [](int64_t n, float s, const float* x, float* y, void*) { leaky_relu_fwd_cpu(n, s, x, y); };
  b.leaky_relu_bwd = [](int64_t n, float s, const float* x, const float* dy, float* dx, GradMode m, void*) {
    leaky_relu_bwd_cpu(n, s, x, dy, dx, m);
  };
  b.add_fwd = [](int64_t n, const float* a, const float* bb, float* y, void*) { add_fwd_cpu(n, a, bb, y); };
  b.add_bwd = [](int64_t n, const float* dy, float* da, float* db, GradMode m, void*) { add_bwd_cpu(n, dy, da, db, m); };
  b.bias_add_fwd = [](int64_t v, int C, const float* bias, float* y, void*) { bias_add_fwd_cpu(v, C, bias, y); };
  b.bias_add_bwd = [](int64_t v, int C, const float* dy, float* db, void*) { bias_add_bwd_cpu(v, C, dy, db); };
  b.concat_fwd = [](int64_t v, int Ca, int Cb, const float* a, const float* bb, float* y, void*) {
    concat_fwd_cpu(v, Ca, Cb, a, bb, y);
  };
  b.concat_bwd = [](int64_t v, int Ca, int Cb, const float* dy, float* da, float* db, GradMode m, void*) {
    concat_bwd_cpu(v, Ca, Cb, dy, da, db, m);
  };
  b.softmax_fwd = [](int64_t v, int C, const float* x, float* y, void*) { softmax_fwd_cpu(v, C, x, y); };
  b.softmax_bwd = [](int64_t v, int C, const float* y, const float* dy, float* dx, void*) {
    softmax_bwd_cpu(v, C, y, dy, dx);
  };
  b.argmax = [](int64_t v, int C, const float* x, uint8_t* out, void*) { argmax_cpu(v, C, x, out); };
  b.dice_ce_fwd_bwd = [](const DiceCEParams& p, const float* z, const uint8_t* t, float* dz, float gs, void*) {
    return dice_ce_fwd_bwd_cpu(p, z, t, dz, gs);
  };
  b.adam_step = [](const AdamParams& a, int64_t step, int64_t n, float* p, const float* g, float* m, float* v,
                   float gs, void*) { adam_step_cpu(a, step, n, p, g, m, v, gs); };
  register_backend(b);
}

}  // namespace dex
