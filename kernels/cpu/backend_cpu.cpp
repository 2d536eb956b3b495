// The CPU backend table: fp32 kernels (the Gemm fast path for convolutions) and the exact emulation of the
// mixed-precision (autocast) convolutions.
#include <cstring>
#include <vector>

#include "kernels/backend.h"

namespace dex {

// ---- mixed precision, emulated exactly: the 16-bit operands widened to fp32 (exact), the fp32 kernels (fp32
// accumulation), the output rounded to 16 bits. Numerically what a 16-bit kernel with fp32 accumulation computes,
// up to summation order; slow (three fp32 copies), meant for tests and the --amp-emulate training option.
namespace {

void check_dt(DType dt, const char* who) {
  DEX_CHECK(dt == DType::F16 || dt == DType::BF16, who, ": 16-bit dtype must be f16 or bf16, got ", dtype_name(dt));
}
void widen(DType dt, int64_t n, const uint16_t* src, float* dst) {
  check_dt(dt, "convert_from_16");
  (dt == DType::F16 ? convert_f16_to_f32_cpu : convert_bf16_to_f32_cpu)(n, src, dst);
}
void narrow(DType dt, int64_t n, const float* src, uint16_t* dst) {
  check_dt(dt, "convert_to_16");
  (dt == DType::F16 ? convert_f32_to_f16_cpu : convert_f32_to_bf16_cpu)(n, src, dst);
}

size_t align_up(size_t b) { return (b + 255) & ~size_t(255); }

// The workspace carved into fp32 copies of the input (x), the weight (w) and the output (y), then the fp32
// kernel's own workspace. With no workspace given, it allocates one (as the fp32 Gemm path does).
template <class P>
struct MixedScratch {
  static size_t bytes(const P& p, size_t rest) {
    return align_up(size_t(p.in_elems()) * 4) + align_up(size_t(p.weight_elems()) * 4) +
           align_up(size_t(p.out_elems()) * 4) + rest;
  }
  std::vector<unsigned char> own;
  float *x, *w, *y;
  void* rest;
  MixedScratch(const P& p, size_t rest_bytes, void* ws) {
    if (!ws) {
      own.resize(bytes(p, rest_bytes) + 256);
      ws = reinterpret_cast<void*>(align_up(reinterpret_cast<size_t>(own.data())));
    }
    auto* b = static_cast<unsigned char*>(ws);
    x = reinterpret_cast<float*>(b);
    b += align_up(size_t(p.in_elems()) * 4);
    w = reinterpret_cast<float*>(b);
    b += align_up(size_t(p.weight_elems()) * 4);
    y = reinterpret_cast<float*>(b);
    b += align_up(size_t(p.out_elems()) * 4);
    rest = rest_bytes ? b : nullptr;
  }
};
using Conv3dScratch = MixedScratch<Conv3dParams>;
using ConvT3dScratch = MixedScratch<ConvTranspose3dParams>;

void conv3d_fprop_mixed_cpu(const Conv3dParams& p, DType dt, const uint16_t* x, const uint16_t* w, uint16_t* y,
                            void* ws) {
  Conv3dScratch s(p, conv3d_cpu_workspace_bytes(p), ws);
  widen(dt, p.in_elems(), x, s.x);
  widen(dt, p.weight_elems(), w, s.w);
  conv3d_fprop_cpu(p, s.x, s.w, s.y, CpuConvImpl::Gemm, s.rest);
  narrow(dt, p.out_elems(), s.y, y);
}
void conv3d_dgrad_mixed_cpu(const Conv3dParams& p, DType dt, const uint16_t* dy, const uint16_t* w, uint16_t* dx,
                            void* ws) {
  Conv3dScratch s(p, conv3d_cpu_workspace_bytes(p), ws);
  widen(dt, p.out_elems(), dy, s.y);
  widen(dt, p.weight_elems(), w, s.w);
  conv3d_dgrad_cpu(p, s.y, s.w, s.x, GradMode::Overwrite, CpuConvImpl::Gemm, s.rest);
  narrow(dt, p.in_elems(), s.x, dx);
}
void conv3d_wgrad_mixed_cpu(const Conv3dParams& p, DType dt, const uint16_t* x, const uint16_t* dy, float* dw,
                            GradMode m, void* ws) {
  Conv3dScratch s(p, conv3d_cpu_workspace_bytes(p), ws);
  widen(dt, p.in_elems(), x, s.x);
  widen(dt, p.out_elems(), dy, s.y);
  conv3d_wgrad_cpu(p, s.x, s.y, dw, m, CpuConvImpl::Gemm, s.rest);
}
void conv_transpose3d_fprop_mixed_cpu(const ConvTranspose3dParams& p, DType dt, const uint16_t* x, const uint16_t* w,
                                      uint16_t* y, void* ws) {
  ConvT3dScratch s(p, 0, ws);
  widen(dt, p.in_elems(), x, s.x);
  widen(dt, p.weight_elems(), w, s.w);
  conv_transpose3d_fprop_cpu(p, s.x, s.w, s.y);
  narrow(dt, p.out_elems(), s.y, y);
}
void conv_transpose3d_dgrad_mixed_cpu(const ConvTranspose3dParams& p, DType dt, const uint16_t* dy,
                                      const uint16_t* w, uint16_t* dx, void* ws) {
  ConvT3dScratch s(p, 0, ws);
  widen(dt, p.out_elems(), dy, s.y);
  widen(dt, p.weight_elems(), w, s.w);
  conv_transpose3d_dgrad_cpu(p, s.y, s.w, s.x, GradMode::Overwrite);
  narrow(dt, p.in_elems(), s.x, dx);
}
void conv_transpose3d_wgrad_mixed_cpu(const ConvTranspose3dParams& p, DType dt, const uint16_t* x,
                                      const uint16_t* dy, float* dw, GradMode m, void* ws) {
  ConvT3dScratch s(p, 0, ws);
  widen(dt, p.in_elems(), x, s.x);
  widen(dt, p.out_elems(), dy, s.y);
  conv_transpose3d_wgrad_cpu(p, s.x, s.y, dw, m);
}

}  // namespace

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
  b.convert_to_16 = [](DType dt, int64_t n, const float* src, uint16_t* dst, void*) { narrow(dt, n, src, dst); };
  b.convert_from_16 = [](DType dt, int64_t n, const uint16_t* src, float* dst, void*) { widen(dt, n, src, dst); };
  b.conv3d_workspace_bytes_mixed = [](const Conv3dParams& p, DType) {
    return Conv3dScratch::bytes(p, conv3d_cpu_workspace_bytes(p));
  };
  b.conv3d_fprop_mixed = [](const Conv3dParams& p, DType dt, const uint16_t* x, const uint16_t* w, uint16_t* y,
                            void* ws, void*) { conv3d_fprop_mixed_cpu(p, dt, x, w, y, ws); };
  b.conv3d_dgrad_mixed = [](const Conv3dParams& p, DType dt, const uint16_t* dy, const uint16_t* w, uint16_t* dx,
                            void* ws, void*) { conv3d_dgrad_mixed_cpu(p, dt, dy, w, dx, ws); };
  b.conv3d_wgrad_mixed = [](const Conv3dParams& p, DType dt, const uint16_t* x, const uint16_t* dy, float* dw,
                            GradMode m, void* ws, void*) { conv3d_wgrad_mixed_cpu(p, dt, x, dy, dw, m, ws); };
  b.conv_transpose3d_workspace_bytes_mixed = [](const ConvTranspose3dParams& p, DType) {
    return ConvT3dScratch::bytes(p, 0);
  };
  b.conv_transpose3d_fprop_mixed = [](const ConvTranspose3dParams& p, DType dt, const uint16_t* x, const uint16_t* w,
                                      uint16_t* y, void* ws, void*) {
    conv_transpose3d_fprop_mixed_cpu(p, dt, x, w, y, ws);
  };
  b.conv_transpose3d_dgrad_mixed = [](const ConvTranspose3dParams& p, DType dt, const uint16_t* dy,
                                      const uint16_t* w, uint16_t* dx, void* ws, void*) {
    conv_transpose3d_dgrad_mixed_cpu(p, dt, dy, w, dx, ws);
  };
  b.conv_transpose3d_wgrad_mixed = [](const ConvTranspose3dParams& p, DType dt, const uint16_t* x,
                                      const uint16_t* dy, float* dw, GradMode m, void* ws, void*) {
    conv_transpose3d_wgrad_mixed_cpu(p, dt, x, dy, dw, m, ws);
  };
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
