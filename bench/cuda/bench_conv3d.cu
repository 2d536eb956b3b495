// CUDA convolution benchmarks on the real DynUNet layer shapes (bench/dynunet_shapes.h) at 128^3 and 64^3, batch 1:
// every dex variant (fprop f16 v1 and v2, bf16 v2; dgrad f16 v2 (every stride; weight repack included); wgrad f16 v2
// (split partials + ordered reduction included); dgrad / wgrad f16 v1 at 64^3 only; transposed fprop f16 v1, v2 and
// transposed dgrad / wgrad f16 v2 (v1 at 64^3 only)) and, on the same shapes, cuDNN fp16 NDHWC (legacy API,
// fp32 compute, tensor-op math, fastest algorithm of cudnnFind*AlgorithmEx): fprop, backward data and backward
// filter (cuDNN's dW is fp16, ours fp32), and cuBLAS GemmEx where a layer is one GEMM (1x1x1 stride 1; transposed
// conv, GEMM part only). Names: <pass>/<impl>/<patch>/<layer>. Counters: us, TFLOP/s, GB/s (fp16 bytes, each tensor
// once) and roofline = max(flops / 989 TF, bytes / 3.35 TB/s) / time (H100 SXM). L2 is flushed before every timed
// launch.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/dynunet_shapes.h"
#include "kernels/cuda/ops_cuda.h"

#if defined(DEX_HAVE_CUDNN)
#include <cudnn.h>
#endif

namespace dex::bench {
namespace {

constexpr uint64_t kSeed = 2026;

// Device tensors of one conv problem in 16-bit storage (x, w, y, dy, dx) and fp32 dw, filled with random data.
struct ConvBuffers {
  DeviceBuffer<uint16_t> x, w, y;
  explicit ConvBuffers(const Conv3dParams& p, DType t)
      : x(size_t(p.in_elems())), w(size_t(p.weight_elems())), y(size_t(p.out_elems())) {
    const int kind = t == DType::BF16 ? 2 : 1;
    fill_random(x.data(), p.in_elems(), kind, kSeed, nullptr);
    fill_random(w.data(), p.weight_elems(), kind, kSeed + 1, nullptr);
    fill_random(y.data(), p.out_elems(), kind, kSeed + 2, nullptr);
    DEX_CUDA_CHECK(cudaDeviceSynchronize());
  }
};

bool skip_without_device(benchmark::State& state) {
  if (no_device_reason().empty()) return false;
  state.SkipWithError(("no CUDA device: " + no_device_reason()).c_str());
  return true;
}

void bm_fprop(benchmark::State& state, Conv3dParams p, DType t, ConvVariant v) {
  if (skip_without_device(state)) return;
  try {
    ConvBuffers b(p, t);
    time_loop(
        state, [&](cudaStream_t s) { conv3d_fprop_cuda(p, t, b.x.data(), b.w.data(), b.y.data(), v, s); }, p.flops(),
        p.bytes(2));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// fp32 fprop: what the fp32 paths run (v1 direct; the tiled kernel under DEX_F32_CONV=tiled) or the tiled kernel
// (conv3d_f32_tiled.cu) directly.
void bm_fprop_f32(benchmark::State& state, Conv3dParams p, bool tiled) {
  if (skip_without_device(state)) return;
  try {
    DeviceBuffer<float> x(size_t(p.in_elems())), w(size_t(p.weight_elems())), y(size_t(p.out_elems()));
    fill_random(x.data(), p.in_elems(), 0, kSeed, nullptr);
    fill_random(w.data(), p.weight_elems(), 0, kSeed + 1, nullptr);
    DEX_CUDA_CHECK(cudaDeviceSynchronize());
    time_loop(
        state,
        [&](cudaStream_t s) {
          if (tiled) conv3d_fprop_f32_tiled_cuda(p, x.data(), w.data(), y.data(), s);
          else conv3d_fprop_cuda(p, x.data(), w.data(), y.data(), nullptr, s);
        },
        p.flops(), p.bytes(4));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void bm_dgrad(benchmark::State& state, Conv3dParams p, DType t, ConvVariant v) {
  if (skip_without_device(state)) return;
  try {
    ConvBuffers b(p, t);
    DeviceBuffer<uint16_t> dx(size_t(p.in_elems()));
    DeviceBuffer<uint8_t> ws(std::max<size_t>(conv3d_dgrad_cuda_workspace_bytes(p, t), 1));
    time_loop(
        state,
        [&](cudaStream_t s) {
          conv3d_dgrad_cuda(p, t, b.y.data(), b.w.data(), dx.data(), GradMode::Overwrite, v, ws.data(), s);
        },
        p.flops(), p.bytes(2));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void bm_wgrad(benchmark::State& state, Conv3dParams p, DType t, ConvVariant v) {
  if (skip_without_device(state)) return;
  try {
    ConvBuffers b(p, t);
    DeviceBuffer<float> dw(size_t(p.weight_elems()));
    DeviceBuffer<uint8_t> ws(std::max<size_t>(conv3d_wgrad_cuda_workspace_bytes(p, t), 1));
    time_loop(
        state,
        [&](cudaStream_t s) {
          conv3d_wgrad_cuda(p, t, b.x.data(), b.y.data(), dw.data(), GradMode::Overwrite, v, ws.data(), s);
        },
        p.flops(), p.bytes(2));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Transposed conv backward: dgrad (dy -> dx) and wgrad (x, dy -> fp32 dw), workspace as the op asks.
void bm_convt_bwd(benchmark::State& state, ConvTranspose3dParams p, DType t, ConvVariant v, bool wgrad) {
  if (skip_without_device(state)) return;
  try {
    DeviceBuffer<uint16_t> x(size_t(p.in_elems())), w(size_t(p.weight_elems())), dy(size_t(p.out_elems()));
    DeviceBuffer<float> dw(size_t(p.weight_elems()));
    fill_random(x.data(), p.in_elems(), 1, kSeed, nullptr);
    fill_random(w.data(), p.weight_elems(), 1, kSeed + 1, nullptr);
    fill_random(dy.data(), p.out_elems(), 1, kSeed + 2, nullptr);
    const size_t wsb = wgrad ? conv_transpose3d_wgrad_cuda_workspace_bytes(p, t)
                             : conv_transpose3d_dgrad_cuda_workspace_bytes(p, t);
    DeviceBuffer<uint8_t> ws(std::max<size_t>(wsb, 1));
    time_loop(
        state,
        [&](cudaStream_t s) {
          if (wgrad)
            conv_transpose3d_wgrad_cuda(p, t, x.data(), dy.data(), dw.data(), GradMode::Overwrite, v, ws.data(), s);
          else
            conv_transpose3d_dgrad_cuda(p, t, dy.data(), w.data(), x.data(), GradMode::Overwrite, v, ws.data(), s);
        },
        p.flops(), double(p.in_elems() + p.weight_elems() + p.out_elems()) * 2);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void bm_convt_fprop(benchmark::State& state, ConvTranspose3dParams p, DType t, ConvVariant v) {
  if (skip_without_device(state)) return;
  try {
    DeviceBuffer<uint16_t> x(size_t(p.in_elems())), w(size_t(p.weight_elems())), y(size_t(p.out_elems()));
    fill_random(x.data(), p.in_elems(), 1, kSeed, nullptr);
    fill_random(w.data(), p.weight_elems(), 1, kSeed + 1, nullptr);
    time_loop(
        state, [&](cudaStream_t s) { conv_transpose3d_fprop_cuda(p, t, x.data(), w.data(), y.data(), v, s); },
        p.flops(), double(p.in_elems() + p.weight_elems() + p.out_elems()) * 2);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---- cuBLAS (dlopen'd): one GemmEx, fp16 in/out, fp32 compute. Y[M][N] = X[M][Kd] * B[N][Kd]^T (row-major). ---
struct Cublas {
  void* lib = nullptr;
  std::string why;
  cublasHandle_t h = nullptr;
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  static Cublas& get() {
    static Cublas c;
    static std::once_flag once;
    std::call_once(once, [] {
      c.lib = open_library({"libcublas.so.13", "libcublas.so.12", "libcublas.so"}, &c.why);
      if (!c.lib) return;
      c.create = reinterpret_cast<decltype(c.create)>(dlsym(c.lib, "cublasCreate_v2"));
      c.set_stream = reinterpret_cast<decltype(c.set_stream)>(dlsym(c.lib, "cublasSetStream_v2"));
      c.gemm_ex = reinterpret_cast<decltype(c.gemm_ex)>(dlsym(c.lib, "cublasGemmEx"));
      if (!c.create || !c.set_stream || !c.gemm_ex) {
        c.why = "libcublas lacks cublasCreate_v2 / cublasSetStream_v2 / cublasGemmEx";
        c.lib = nullptr;
        return;
      }
      if (c.create(&c.h) != CUBLAS_STATUS_SUCCESS) {
        c.why = "cublasCreate failed";
        c.lib = nullptr;
      }
    });
    return c;
  }
};

void bm_cublas_gemm(benchmark::State& state, int64_t M, int N, int Kd, double bytes) {
  if (skip_without_device(state)) return;
  Cublas& cb = Cublas::get();
  if (!cb.lib) {
    state.SkipWithError(("cuBLAS unavailable: " + cb.why).c_str());
    return;
  }
  try {
    DeviceBuffer<uint16_t> x(size_t(M * Kd)), w(size_t(int64_t(N) * Kd)), y(size_t(M * N));
    fill_random(x.data(), M * Kd, 1, kSeed, nullptr);
    fill_random(w.data(), int64_t(N) * Kd, 1, kSeed + 1, nullptr);
    const float alpha = 1.f, beta = 0.f;
    time_loop(
        state,
        [&](cudaStream_t s) {
          DEX_CUBLAS_CHECK(cb.set_stream(cb.h, s));
          // Column-major: Y^T (N x M, ld N) = W^T' ... i.e. op(W) = T (W is Kd x N col-major), op(X) = N.
          DEX_CUBLAS_CHECK(cb.gemm_ex(cb.h, CUBLAS_OP_T, CUBLAS_OP_N, N, int(M), Kd, &alpha, w.data(), CUDA_R_16F, Kd,
                                      x.data(), CUDA_R_16F, Kd, &beta, y.data(), CUDA_R_16F, N, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
        },
        2.0 * double(M) * N * Kd, bytes);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

#if defined(DEX_HAVE_CUDNN)
// ---- cuDNN (dlopen'd), legacy API: fp16 NDHWC tensors, KTRSC (NHWC-format) filters, fp32 compute, tensor ops. ---
struct Cudnn {
  void* lib = nullptr;
  std::string why;
  cudnnHandle_t h = nullptr;
#define DEX_CUDNN_FN(name) decltype(&::name) name = nullptr
  DEX_CUDNN_FN(cudnnCreate);
  DEX_CUDNN_FN(cudnnSetStream);
  DEX_CUDNN_FN(cudnnGetVersion);
  DEX_CUDNN_FN(cudnnCreateTensorDescriptor);
  DEX_CUDNN_FN(cudnnSetTensorNdDescriptor);
  DEX_CUDNN_FN(cudnnDestroyTensorDescriptor);
  DEX_CUDNN_FN(cudnnCreateFilterDescriptor);
  DEX_CUDNN_FN(cudnnSetFilterNdDescriptor);
  DEX_CUDNN_FN(cudnnDestroyFilterDescriptor);
  DEX_CUDNN_FN(cudnnCreateConvolutionDescriptor);
  DEX_CUDNN_FN(cudnnSetConvolutionNdDescriptor);
  DEX_CUDNN_FN(cudnnSetConvolutionMathType);
  DEX_CUDNN_FN(cudnnDestroyConvolutionDescriptor);
  DEX_CUDNN_FN(cudnnFindConvolutionForwardAlgorithmEx);
  DEX_CUDNN_FN(cudnnConvolutionForward);
  DEX_CUDNN_FN(cudnnFindConvolutionBackwardDataAlgorithmEx);
  DEX_CUDNN_FN(cudnnConvolutionBackwardData);
  DEX_CUDNN_FN(cudnnFindConvolutionBackwardFilterAlgorithmEx);
  DEX_CUDNN_FN(cudnnConvolutionBackwardFilter);
#undef DEX_CUDNN_FN
  static Cudnn& get() {
    static Cudnn c;
    static std::once_flag once;
    std::call_once(once, [] {
      c.lib = open_library({"libcudnn.so.9", "libcudnn.so"}, &c.why);
      if (!c.lib) return;
      bool ok = true;
#define DEX_CUDNN_LOAD(name) ok = ok && (c.name = reinterpret_cast<decltype(c.name)>(dlsym(c.lib, #name))) != nullptr
      DEX_CUDNN_LOAD(cudnnCreate);
      DEX_CUDNN_LOAD(cudnnSetStream);
      DEX_CUDNN_LOAD(cudnnGetVersion);
      DEX_CUDNN_LOAD(cudnnCreateTensorDescriptor);
      DEX_CUDNN_LOAD(cudnnSetTensorNdDescriptor);
      DEX_CUDNN_LOAD(cudnnDestroyTensorDescriptor);
      DEX_CUDNN_LOAD(cudnnCreateFilterDescriptor);
      DEX_CUDNN_LOAD(cudnnSetFilterNdDescriptor);
      DEX_CUDNN_LOAD(cudnnDestroyFilterDescriptor);
      DEX_CUDNN_LOAD(cudnnCreateConvolutionDescriptor);
      DEX_CUDNN_LOAD(cudnnSetConvolutionNdDescriptor);
      DEX_CUDNN_LOAD(cudnnSetConvolutionMathType);
      DEX_CUDNN_LOAD(cudnnDestroyConvolutionDescriptor);
      DEX_CUDNN_LOAD(cudnnFindConvolutionForwardAlgorithmEx);
      DEX_CUDNN_LOAD(cudnnConvolutionForward);
      DEX_CUDNN_LOAD(cudnnFindConvolutionBackwardDataAlgorithmEx);
      DEX_CUDNN_LOAD(cudnnConvolutionBackwardData);
      DEX_CUDNN_LOAD(cudnnFindConvolutionBackwardFilterAlgorithmEx);
      DEX_CUDNN_LOAD(cudnnConvolutionBackwardFilter);
#undef DEX_CUDNN_LOAD
      if (!ok) {
        c.why = "libcudnn.so.9 lacks a legacy convolution entry point";
        c.lib = nullptr;
        return;
      }
      if (c.cudnnCreate(&c.h) != CUDNN_STATUS_SUCCESS) {
        c.why = "cudnnCreate failed";
        c.lib = nullptr;
      }
    });
    return c;
  }
};

// pass 0: forward (x, w -> y), 1: backward data (dy, w -> dx), 2: backward filter (x, dy -> dw, fp16).
void bm_cudnn(benchmark::State& state, Conv3dParams p, int pass) {
  if (skip_without_device(state)) return;
  Cudnn& cd = Cudnn::get();
  if (!cd.lib) {
    state.SkipWithError(("cuDNN unavailable: " + cd.why).c_str());
    return;
  }
  cudnnTensorDescriptor_t xd = nullptr, yd = nullptr;
  cudnnFilterDescriptor_t wd = nullptr;
  cudnnConvolutionDescriptor_t cvd = nullptr;
  try {
    ConvBuffers b(p, DType::F16);
    DeviceBuffer<uint16_t> dx(size_t(p.in_elems())), dw(size_t(p.weight_elems()));
    const int xdim[5] = {p.N, p.C, p.D, p.H, p.W};
    const int xstr[5] = {p.D * p.H * p.W * p.C, 1, p.H * p.W * p.C, p.W * p.C, p.C};
    const int ydim[5] = {p.N, p.K, p.OD(), p.OH(), p.OW()};
    const int ystr[5] = {p.OD() * p.OH() * p.OW() * p.K, 1, p.OH() * p.OW() * p.K, p.OW() * p.K, p.K};
    const int wdim[5] = {p.K, p.C, p.KD, p.KH, p.KW};
    DEX_CUDNN_CHECK(cd.cudnnCreateTensorDescriptor(&xd));
    DEX_CUDNN_CHECK(cd.cudnnCreateTensorDescriptor(&yd));
    DEX_CUDNN_CHECK(cd.cudnnCreateFilterDescriptor(&wd));
    DEX_CUDNN_CHECK(cd.cudnnCreateConvolutionDescriptor(&cvd));
    DEX_CUDNN_CHECK(cd.cudnnSetTensorNdDescriptor(xd, CUDNN_DATA_HALF, 5, xdim, xstr));
    DEX_CUDNN_CHECK(cd.cudnnSetTensorNdDescriptor(yd, CUDNN_DATA_HALF, 5, ydim, ystr));
    DEX_CUDNN_CHECK(cd.cudnnSetFilterNdDescriptor(wd, CUDNN_DATA_HALF, CUDNN_TENSOR_NHWC, 5, wdim));
    DEX_CUDNN_CHECK(cd.cudnnSetConvolutionNdDescriptor(cvd, 3, p.pad, p.stride, p.dil, CUDNN_CROSS_CORRELATION,
                                                       CUDNN_DATA_FLOAT));
    DEX_CUDNN_CHECK(cd.cudnnSetConvolutionMathType(cvd, CUDNN_TENSOR_OP_MATH));
    const size_t ws_bytes = size_t(512) << 20;
    DeviceBuffer<uint8_t> ws(ws_bytes);
    const float alpha = 1.f, beta = 0.f;
    int returned = 0, pick = -1, algo = 0;
    bool tensor_op = false;
    if (pass == 0) {
      cudnnConvolutionFwdAlgoPerf_t perf[8];
      DEX_CUDNN_CHECK(cd.cudnnFindConvolutionForwardAlgorithmEx(cd.h, xd, b.x.data(), wd, b.w.data(), cvd, yd,
                                                                b.y.data(), 8, &returned, perf, ws.data(), ws_bytes));
      for (int i = 0; i < returned && pick < 0; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS) pick = i;
      if (pick >= 0) algo = perf[pick].algo, tensor_op = perf[pick].mathType == CUDNN_TENSOR_OP_MATH;
    } else if (pass == 1) {
      cudnnConvolutionBwdDataAlgoPerf_t perf[8];
      DEX_CUDNN_CHECK(cd.cudnnFindConvolutionBackwardDataAlgorithmEx(cd.h, wd, b.w.data(), yd, b.y.data(), cvd, xd,
                                                                     dx.data(), 8, &returned, perf, ws.data(), ws_bytes));
      for (int i = 0; i < returned && pick < 0; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS) pick = i;
      if (pick >= 0) algo = perf[pick].algo, tensor_op = perf[pick].mathType == CUDNN_TENSOR_OP_MATH;
    } else {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[8];
      DEX_CUDNN_CHECK(cd.cudnnFindConvolutionBackwardFilterAlgorithmEx(cd.h, xd, b.x.data(), yd, b.y.data(), cvd, wd,
                                                                       dw.data(), 8, &returned, perf, ws.data(),
                                                                       ws_bytes));
      for (int i = 0; i < returned && pick < 0; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS) pick = i;
      if (pick >= 0) algo = perf[pick].algo, tensor_op = perf[pick].mathType == CUDNN_TENSOR_OP_MATH;
    }
    DEX_CHECK(pick >= 0, "cuDNN found no working algorithm (pass ", pass, ") for ", p.C, "->", p.K);
    state.SetLabel(str("algo ", algo, ", ", tensor_op ? "tensor-op" : "default", ", cuDNN ", cd.cudnnGetVersion()));
    time_loop(
        state,
        [&](cudaStream_t s) {
          DEX_CUDNN_CHECK(cd.cudnnSetStream(cd.h, s));
          if (pass == 0)
            DEX_CUDNN_CHECK(cd.cudnnConvolutionForward(cd.h, &alpha, xd, b.x.data(), wd, b.w.data(), cvd,
                                                       cudnnConvolutionFwdAlgo_t(algo), ws.data(), ws_bytes, &beta, yd,
                                                       b.y.data()));
          else if (pass == 1)
            DEX_CUDNN_CHECK(cd.cudnnConvolutionBackwardData(cd.h, &alpha, wd, b.w.data(), yd, b.y.data(), cvd,
                                                            cudnnConvolutionBwdDataAlgo_t(algo), ws.data(), ws_bytes,
                                                            &beta, xd, dx.data()));
          else
            DEX_CUDNN_CHECK(cd.cudnnConvolutionBackwardFilter(cd.h, &alpha, xd, b.x.data(), yd, b.y.data(), cvd,
                                                              cudnnConvolutionBwdFilterAlgo_t(algo), ws.data(),
                                                              ws_bytes, &beta, wd, dw.data()));
        },
        p.flops(), p.bytes(2));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  if (xd) cd.cudnnDestroyTensorDescriptor(xd);
  if (yd) cd.cudnnDestroyTensorDescriptor(yd);
  if (wd) cd.cudnnDestroyFilterDescriptor(wd);
  if (cvd) cd.cudnnDestroyConvolutionDescriptor(cvd);
}
#endif

// ---- registration ------------------------------------------------------------------------------------------------
void reg(const std::string& name, std::function<void(benchmark::State&)> fn) {
  benchmark::RegisterBenchmark(name.c_str(), std::move(fn))->UseManualTime()->Unit(benchmark::kMicrosecond);
}

int register_all() {
  benchmark::AddCustomContext("dex_device", no_device_reason().empty() ? cuda_device_summary(0)
                                                                       : "none (" + no_device_reason() + ")");
  for (int patch : {128, 64}) {
    for (const ConvLayerShape& l : dynunet_conv_shapes(patch)) {
      const std::string tail = str("/", patch, "/", l.name);
      if (l.transposed) {
        const ConvTranspose3dParams p = l.convt;
        reg("conv_transpose3d_fprop/f16_v1" + tail,
            [p](benchmark::State& s) { bm_convt_fprop(s, p, DType::F16, ConvVariant::Direct); });
        if (conv_transpose3d_fprop_cuda_supports(p, DType::F16, ConvVariant::Mma))
          reg("conv_transpose3d_fprop/f16_v2" + tail,
              [p](benchmark::State& s) { bm_convt_fprop(s, p, DType::F16, ConvVariant::Mma); });
        const int64_t M = int64_t(p.N) * p.D * p.H * p.W;
        const int N = p.K * int(p.taps());
        reg("conv_transpose3d_fprop/cublas_gemm_only" + tail, [=](benchmark::State& s) {
          bm_cublas_gemm(s, M, N, p.C, double(p.in_elems() + p.weight_elems() + p.out_elems()) * 2);
        });
        for (bool wg : {false, true}) {
          const std::string pass = wg ? "conv_transpose3d_wgrad/" : "conv_transpose3d_dgrad/";
          if (conv_transpose3d_dgrad_cuda_supports(p, DType::F16, ConvVariant::Mma))
            reg(pass + "f16_v2" + tail,
                [p, wg](benchmark::State& s) { bm_convt_bwd(s, p, DType::F16, ConvVariant::Mma, wg); });
          if (patch == 64)
            reg(pass + "f16_v1" + tail,
                [p, wg](benchmark::State& s) { bm_convt_bwd(s, p, DType::F16, ConvVariant::Direct, wg); });
        }
        continue;
      }
      const Conv3dParams p = l.conv;
      reg("conv3d_fprop/f16_v1" + tail, [p](benchmark::State& s) { bm_fprop(s, p, DType::F16, ConvVariant::Direct); });
      reg("conv3d_fprop/f32_v1" + tail, [p](benchmark::State& s) { bm_fprop_f32(s, p, false); });
      if (conv3d_fprop_f32_tiled_supports(p))
        reg("conv3d_fprop/f32_tiled" + tail, [p](benchmark::State& s) { bm_fprop_f32(s, p, true); });
      if (conv3d_fprop_cuda_supports(p, DType::F16, ConvVariant::Mma)) {
        reg("conv3d_fprop/f16_v2" + tail, [p](benchmark::State& s) { bm_fprop(s, p, DType::F16, ConvVariant::Mma); });
        reg("conv3d_fprop/bf16_v2" + tail, [p](benchmark::State& s) { bm_fprop(s, p, DType::BF16, ConvVariant::Mma); });
      }
#if defined(DEX_HAVE_CUDNN)
      reg("conv3d_fprop/cudnn_f16" + tail, [p](benchmark::State& s) { bm_cudnn(s, p, 0); });
      reg("conv3d_dgrad/cudnn_f16" + tail, [p](benchmark::State& s) { bm_cudnn(s, p, 1); });
      reg("conv3d_wgrad/cudnn_f16" + tail, [p](benchmark::State& s) { bm_cudnn(s, p, 2); });
#endif
      if (p.taps() == 1 && p.stride[0] == 1 && p.stride[1] == 1 && p.stride[2] == 1)
        reg("conv3d_fprop/cublas_f16" + tail,
            [p](benchmark::State& s) { bm_cublas_gemm(s, p.out_voxels(), p.K, p.C, p.bytes(2)); });
      if (conv3d_dgrad_cuda_supports(p, DType::F16, ConvVariant::Mma))
        reg("conv3d_dgrad/f16_v2" + tail,
            [p](benchmark::State& s) { bm_dgrad(s, p, DType::F16, ConvVariant::Mma); });
      if (conv3d_wgrad_cuda_supports(p, DType::F16, ConvVariant::Mma))
        reg("conv3d_wgrad/f16_v2" + tail,
            [p](benchmark::State& s) { bm_wgrad(s, p, DType::F16, ConvVariant::Mma); });
      if (patch == 64) {  // v1 backward kernels are slow at 128^3; 64^3 keeps the whole run within the lease
        reg("conv3d_dgrad/f16_v1" + tail,
            [p](benchmark::State& s) { bm_dgrad(s, p, DType::F16, ConvVariant::Direct); });
        reg("conv3d_wgrad/f16_v1" + tail,
            [p](benchmark::State& s) { bm_wgrad(s, p, DType::F16, ConvVariant::Direct); });
      }
    }
  }
  return 0;
}
[[maybe_unused]] const int registered = register_all();

}  // namespace
}  // namespace dex::bench
