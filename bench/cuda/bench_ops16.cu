// Benchmarks of the non-convolution CUDA ops (kernels/cuda/ops16_cuda.h) on the DynUNet's 128^3 sizes, batch 1,
// fp32 storage against f16 (and bf16 where the kernel differs only in the conversion, the norm): every op is
// memory-bound, so the counters that matter are GB/s and `roofline` = (bytes / 3.35 TB/s) / time, the fraction of
// the H100 SXM HBM3 bandwidth reached. Bytes count every tensor the op must touch once (the ideal traffic; a kernel
// that reads its input twice, like the norm (statistics pass + apply pass), shows it as a lower fraction). L2 is flushed before every
// timed launch (bench_util.h). Names: ops16/<op>/<dtype>/<shape>.
//
// Shapes: norm / LeakyReLU / add at 32 ch x 128^3 (input_block and the last decoder level); concat 32 + 32 -> 64 ch
// (the last skip connection); the head at 2 ch x 128^3 (bias, softmax, argmax, DiceCE); conversions at 32 x 128^3.
#include <cuda_runtime.h>

#include <functional>
#include <string>

#include "bench/cuda/bench_util.h"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/split_cuda.h"

namespace dex::bench {
namespace {

constexpr uint64_t kSeed = 2027;
constexpr int64_t kVox = 128LL * 128 * 128;

bool skip_without_device(benchmark::State& state) {
  if (no_device_reason().empty()) return false;
  state.SkipWithError(("no CUDA device: " + no_device_reason()).c_str());
  return true;
}

int kind_of(DType t) { return t == DType::F32 ? 0 : t == DType::F16 ? 1 : 2; }
double es(DType t) { return double(dtype_size(t)); }

// A device tensor of n elements of storage type t, filled with uniform values in [-1, 1).
struct Tensor {
  DeviceBuffer<uint8_t> buf;
  Tensor(int64_t n, DType t, uint64_t seed) : buf(size_t(n) * dtype_size(t)) {
    fill_random(buf.data(), n, kind_of(t), seed, nullptr);
  }
  void* data() const { return buf.data(); }
  float* f32() const { return reinterpret_cast<float*>(buf.data()); }
};

__global__ void fill_labels_kernel(uint8_t* p, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = uint8_t(((uint64_t(i) * 0x9E3779B97F4A7C15ull) >> 61) & 1);  // 0 / 1, no long runs
}

// Runs `body` (which sets up buffers and calls time_loop) unless there is no device; errors become skips.
void guarded(benchmark::State& state, const std::function<void()>& body) {
  if (skip_without_device(state)) return;
  try {
    body();
    DEX_CUDA_CHECK(cudaDeviceSynchronize());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Norm rows: `v1` = the old one-block-per-(32 channels, sample) kernels (instance_norm_*_v1_cuda); otherwise the
// default entry points (the split variant, kernels/cuda/reduce_split.h; the workspace comes from stream_workspace()
// and is allocated during the warm-up, outside the timed launches).
void bm_norm_fwd(benchmark::State& state, DType t, int C, bool v1) {
  guarded(state, [&] {
    InstanceNormParams p;
    p.N = 1; p.C = C; p.S = kVox;
    const int64_t n = p.S * C;
    Tensor x(n, t, kSeed), y(n, t, kSeed + 1), mean(C, DType::F32, 0), rstd(C, DType::F32, 0);
    time_loop(state, [&](cudaStream_t s) {
      if (v1) instance_norm_fwd_v1_cuda(p, t, x.data(), nullptr, nullptr, y.data(), mean.f32(), rstd.f32(), s);
      else instance_norm_fwd_cuda(p, t, x.data(), nullptr, nullptr, y.data(), mean.f32(), rstd.f32(), s);
    }, 0, 2 * n * es(t));
  });
}

void bm_norm_bwd(benchmark::State& state, DType t, int C, bool v1) {
  guarded(state, [&] {
    InstanceNormParams p;
    p.N = 1; p.C = C; p.S = kVox;
    const int64_t n = p.S * C;
    Tensor x(n, t, kSeed), dy(n, t, kSeed + 1), dx(n, t, kSeed + 2), mean(C, DType::F32, 0), rstd(C, DType::F32, 0);
    instance_norm_fwd_cuda(p, t, x.data(), nullptr, nullptr, dx.data(), mean.f32(), rstd.f32(), nullptr);
    time_loop(state, [&](cudaStream_t s) {
      if (v1)
        instance_norm_bwd_v1_cuda(p, t, x.data(), dy.data(), mean.f32(), rstd.f32(), nullptr, dx.data(), nullptr,
                                  nullptr, GradMode::Overwrite, s);
      else
        instance_norm_bwd_cuda(p, t, x.data(), dy.data(), mean.f32(), rstd.f32(), nullptr, dx.data(), nullptr, nullptr,
                               GradMode::Overwrite, s);
    }, 0, 3 * n * es(t));
  });
}

void bm_leaky_fwd(benchmark::State& state, DType t, int64_t n) {
  guarded(state, [&] {
    Tensor x(n, t, kSeed), y(n, t, kSeed + 1);
    time_loop(state, [&](cudaStream_t s) { leaky_relu_fwd_cuda(n, 0.01f, t, x.data(), y.data(), s); }, 0,
              2 * n * es(t));
  });
}

void bm_leaky_bwd(benchmark::State& state, DType t, int64_t n) {
  guarded(state, [&] {
    Tensor x(n, t, kSeed), dy(n, t, kSeed + 1), dx(n, t, kSeed + 2);
    time_loop(state, [&](cudaStream_t s) {
      leaky_relu_bwd_cuda(n, 0.01f, t, x.data(), dy.data(), dx.data(), GradMode::Overwrite, s);
    }, 0, 3 * n * es(t));
  });
}

void bm_add_fwd(benchmark::State& state, DType t, int64_t n) {
  guarded(state, [&] {
    Tensor a(n, t, kSeed), b(n, t, kSeed + 1), y(n, t, kSeed + 2);
    time_loop(state, [&](cudaStream_t s) { add_fwd_cuda(n, t, a.data(), b.data(), y.data(), s); }, 0, 3 * n * es(t));
  });
}

void bm_add_bwd(benchmark::State& state, DType t, int64_t n) {
  guarded(state, [&] {
    Tensor dy(n, t, kSeed), da(n, t, kSeed + 1), db(n, t, kSeed + 2);  // a residual add: both branches accumulate
    time_loop(state, [&](cudaStream_t s) {
      add_bwd_cuda(n, t, dy.data(), da.data(), db.data(), GradMode::Accumulate, s);
    }, 0, 5 * n * es(t));
  });
}

void bm_bias_fwd(benchmark::State& state, DType t, int C) {
  guarded(state, [&] {
    Tensor bias(C, DType::F32, kSeed), y(kVox * C, t, kSeed + 1);
    time_loop(state, [&](cudaStream_t s) { bias_add_fwd_cuda(kVox, C, t, bias.f32(), y.data(), s); }, 0,
              2 * kVox * C * es(t));
  });
}

void bm_bias_bwd(benchmark::State& state, DType t, int C) {
  guarded(state, [&] {
    Tensor dy(kVox * C, t, kSeed), dbias(C, DType::F32, kSeed + 1);
    time_loop(state, [&](cudaStream_t s) { bias_add_bwd_cuda(kVox, C, t, dy.data(), dbias.f32(), s); }, 0,
              kVox * C * es(t));
  });
}

void bm_concat_fwd(benchmark::State& state, DType t, int Ca, int Cb) {
  guarded(state, [&] {
    Tensor a(kVox * Ca, t, kSeed), b(kVox * Cb, t, kSeed + 1), y(kVox * (Ca + Cb), t, kSeed + 2);
    time_loop(state, [&](cudaStream_t s) { concat_fwd_cuda(kVox, Ca, Cb, t, a.data(), b.data(), y.data(), s); }, 0,
              2 * kVox * (Ca + Cb) * es(t));
  });
}

void bm_concat_bwd(benchmark::State& state, DType t, int Ca, int Cb) {
  guarded(state, [&] {
    Tensor dy(kVox * (Ca + Cb), t, kSeed), da(kVox * Ca, t, kSeed + 1), db(kVox * Cb, t, kSeed + 2);
    time_loop(state, [&](cudaStream_t s) {
      concat_bwd_cuda(kVox, Ca, Cb, t, dy.data(), da.data(), db.data(), GradMode::Overwrite, s);
    }, 0, 2 * kVox * (Ca + Cb) * es(t));
  });
}

void bm_softmax_fwd(benchmark::State& state, DType t, int C) {
  guarded(state, [&] {
    Tensor x(kVox * C, t, kSeed), y(kVox * C, DType::F32, kSeed + 1);
    time_loop(state, [&](cudaStream_t s) { softmax_fwd_cuda(kVox, C, t, x.data(), y.f32(), s); }, 0,
              kVox * C * (es(t) + 4));
  });
}

void bm_softmax_bwd(benchmark::State& state, DType t, int C) {
  guarded(state, [&] {
    Tensor y(kVox * C, DType::F32, kSeed), dy(kVox * C, t, kSeed + 1), dx(kVox * C, t, kSeed + 2);
    time_loop(state, [&](cudaStream_t s) { softmax_bwd_cuda(kVox, C, t, y.f32(), dy.data(), dx.data(), s); }, 0,
              kVox * C * (4 + 2 * es(t)));
  });
}

void bm_argmax(benchmark::State& state, DType t, int C) {
  guarded(state, [&] {
    Tensor x(kVox * C, t, kSeed);
    DeviceBuffer<uint8_t> out{size_t(kVox)};
    time_loop(state, [&](cudaStream_t s) { argmax_cuda(kVox, C, t, x.data(), out.data(), s); }, 0,
              kVox * (C * es(t) + 1));
  });
}

// The launcher synchronises (the loss comes back to the host between the sums and the gradient kernels): the time
// includes that round trip, as it does in training.
void bm_dice_ce(benchmark::State& state, DType t, int C) {
  guarded(state, [&] {
    DiceCEParams p;
    p.N = 1; p.C = C; p.S = kVox;
    Tensor z(kVox * C, t, kSeed), dz(kVox * C, t, kSeed + 1);
    DeviceBuffer<uint8_t> target{size_t(kVox)};
    fill_labels_kernel<<<1024, 256>>>(target.data(), kVox);
    DEX_LAUNCH_CHECK("fill_labels_kernel", nullptr);
    time_loop(state, [&](cudaStream_t s) { dice_ce_fwd_bwd_cuda(p, t, z.data(), target.data(), dz.data(), 1024.f, s); },
              0, kVox * (2 * C * es(t) + 1));
  });
}

void bm_convert(benchmark::State& state, DType from, DType to, int64_t n) {
  guarded(state, [&] {
    Tensor src(n, from, kSeed), dst(n, to, kSeed + 1);
    auto* s16 = static_cast<const uint16_t*>(src.data());
    auto* d16 = static_cast<uint16_t*>(dst.data());
    time_loop(state, [&](cudaStream_t s) {
      if (from == DType::F32 && to == DType::F16) convert_f32_to_f16_cuda(n, src.f32(), d16, s);
      else if (from == DType::F16 && to == DType::F32) convert_f16_to_f32_cuda(n, s16, dst.f32(), s);
      else if (from == DType::F16 && to == DType::BF16) convert_f16_to_bf16_cuda(n, s16, d16, s);
      else throw Error(str("bm_convert: no conversion ", dtype_name(from), " -> ", dtype_name(to)));
    }, 0, n * (es(from) + es(to)));
  });
}

void reg(const std::string& name, std::function<void(benchmark::State&)> fn) {
  benchmark::RegisterBenchmark(name.c_str(), std::move(fn))->UseManualTime()->Unit(benchmark::kMicrosecond);
}

int register_all() {
  const int64_t n32 = kVox * 32;
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    const std::string d = dtype_name(t);
    for (bool v1 : {false, true}) {
      const std::string v = v1 ? "_v1" : "";  // no suffix: the split variant the entry points run
      reg("ops16/instance_norm_fwd" + v + "/" + d + "/32x128^3", [=](benchmark::State& s) { bm_norm_fwd(s, t, 32, v1); });
      reg("ops16/instance_norm_bwd" + v + "/" + d + "/32x128^3", [=](benchmark::State& s) { bm_norm_bwd(s, t, 32, v1); });
    }
    if (t == DType::BF16) continue;  // the rest: bf16 differs from f16 only in the conversion instruction
    reg("ops16/leaky_relu_fwd/" + d + "/32x128^3", [=](benchmark::State& s) { bm_leaky_fwd(s, t, n32); });
    reg("ops16/leaky_relu_bwd/" + d + "/32x128^3", [=](benchmark::State& s) { bm_leaky_bwd(s, t, n32); });
    reg("ops16/add_fwd/" + d + "/32x128^3", [=](benchmark::State& s) { bm_add_fwd(s, t, n32); });
    reg("ops16/add_bwd_acc/" + d + "/32x128^3", [=](benchmark::State& s) { bm_add_bwd(s, t, n32); });
    reg("ops16/concat_fwd/" + d + "/32+32x128^3", [t](benchmark::State& s) { bm_concat_fwd(s, t, 32, 32); });
    reg("ops16/concat_bwd/" + d + "/32+32x128^3", [t](benchmark::State& s) { bm_concat_bwd(s, t, 32, 32); });
    reg("ops16/bias_add_fwd/" + d + "/2x128^3", [t](benchmark::State& s) { bm_bias_fwd(s, t, 2); });
    reg("ops16/bias_add_bwd/" + d + "/2x128^3", [t](benchmark::State& s) { bm_bias_bwd(s, t, 2); });
    reg("ops16/softmax_fwd/" + d + "/2x128^3", [t](benchmark::State& s) { bm_softmax_fwd(s, t, 2); });
    reg("ops16/softmax_bwd/" + d + "/2x128^3", [t](benchmark::State& s) { bm_softmax_bwd(s, t, 2); });
    reg("ops16/argmax/" + d + "/2x128^3", [t](benchmark::State& s) { bm_argmax(s, t, 2); });
    reg("ops16/dice_ce_fwd_bwd/" + d + "/2x128^3", [t](benchmark::State& s) { bm_dice_ce(s, t, 2); });
  }
  reg("ops16/convert/f32_to_f16/32x128^3", [=](benchmark::State& s) { bm_convert(s, DType::F32, DType::F16, n32); });
  reg("ops16/convert/f16_to_f32/32x128^3", [=](benchmark::State& s) { bm_convert(s, DType::F16, DType::F32, n32); });
  reg("ops16/convert/f16_to_bf16/32x128^3", [=](benchmark::State& s) { bm_convert(s, DType::F16, DType::BF16, n32); });
  return 0;
}
[[maybe_unused]] const int registered = register_all();

}  // namespace
}  // namespace dex::bench
