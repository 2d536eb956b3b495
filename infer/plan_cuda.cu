// The inference plan's CUDA pieces (infer/inference_plan.cpp declares them; built only with dex_cuda):
//   conv3d_fprop_two_source  the decoder's conv1 over [up | skip] without a concat copy: fp32, direct (v1: one
//                            thread per output element, taps then channels in order, fp32 accumulation), the
//                            readable oracle for a fused kernel, not a fast one.
//   streams and graphs       the plan's stream; capture of the whole forward into one CUDA graph, replay, replays
//                            timed with CUDA events.
//   f16 plan pieces          (fp16 storage, fp32 arithmetic and statistics; all v1, deterministic, no atomics)
//                            instance-norm statistics (per block of voxels two passes, mean then the sum of squared
//                            deviations, in double; the blocks' partials combined in order with Chan's formula),
//                            normalise (+ LeakyReLU) in place, add (+ LeakyReLU) (the arithmetic of
//                            plan_conv_fused.h, so the fused kernels' operands equal these stored values bit for bit),
//                            the head's 1x1 conv + bias into fp32 logits, and wrappers over the CUDA helper's f16
//                            convs (conv3d v2 mma.sync where it applies, else its direct kernel).
// Opaque void* in the declarations keep CUDA headers out of inference_plan.cpp.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "infer/plan_conv_fused.h"
#include "kernels/conv3d.h"
#include "kernels/cuda/cuda_runtime.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/split_cuda.h"

namespace dex {
namespace plan_cuda {

namespace {

struct TwoSourceGeom {
  int N, D, H, W, OD, OH, OW, K, KD, KH, KW, Ca, Cb;
  int stride[3], pad[3], dil[3];
};

// y[m][k] = sum over taps (kd, kh, kw) and channels c < Ca + Cb of src(m, tap)[c] * w[k][tap][c], where src is
// `a` for c < Ca and `b` (channel c - Ca) otherwise. k is the fastest thread index (coalesced stores).
__device__ inline float ld(const float* p) { return *p; }
__device__ inline float ld(const __half* p) { return __half2float(*p); }
__device__ inline void st(float* p, float v) { *p = v; }
__device__ inline void st(__half* p, float v) { *p = __float2half_rn(v); }

template <class T>
__global__ void conv3d_two_source_kernel_v1(TwoSourceGeom g, const T* __restrict__ a, const T* __restrict__ b,
                                            const T* __restrict__ w, T* __restrict__ y, int64_t total) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int k = int(i % g.K);
  int64_t m = i / g.K;
  const int ow = int(m % g.OW);
  m /= g.OW;
  const int oh = int(m % g.OH);
  m /= g.OH;
  const int od = int(m % g.OD);
  const int n = int(m / g.OD);
  const int C = g.Ca + g.Cb;
  const T* wk = w + int64_t(k) * g.KD * g.KH * g.KW * C;
  float acc = 0.f;
  for (int kd = 0; kd < g.KD; ++kd) {
    const int id = od * g.stride[0] - g.pad[0] + kd * g.dil[0];
    for (int kh = 0; kh < g.KH; ++kh) {
      const int ih = oh * g.stride[1] - g.pad[1] + kh * g.dil[1];
      for (int kw = 0; kw < g.KW; ++kw) {
        const int iw = ow * g.stride[2] - g.pad[2] + kw * g.dil[2];
        const T* wt = wk + ((int64_t(kd) * g.KH + kh) * g.KW + kw) * C;
        if (id < 0 || id >= g.D || ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
        const int64_t v = ((int64_t(n) * g.D + id) * g.H + ih) * g.W + iw;
        const T* av = a + v * g.Ca;
        const T* bv = b + v * g.Cb;
        for (int c = 0; c < g.Ca; ++c) acc = fmaf(ld(av + c), ld(wt + c), acc);
        for (int c = 0; c < g.Cb; ++c) acc = fmaf(ld(bv + c), ld(wt + g.Ca + c), acc);
      }
    }
  }
  st(y + i, acc);
}

}  // namespace

template <class T>
void two_source_launch(const Conv3dParams& p, const T* a, int Ca, const T* b, int Cb, const T* w, T* y, void* stream) {
  p.validate();
  DEX_CHECK(Ca > 0 && Cb > 0 && Ca + Cb == p.C, "two-source conv: ", Ca, " + ", Cb, " channels for a conv over ", p.C);
  DEX_CHECK(a && b && w && y, "two-source conv: null pointer");
  TwoSourceGeom g;
  g.N = p.N; g.D = p.D; g.H = p.H; g.W = p.W;
  g.OD = p.OD(); g.OH = p.OH(); g.OW = p.OW();
  g.K = p.K; g.KD = p.KD; g.KH = p.KH; g.KW = p.KW;
  g.Ca = Ca; g.Cb = Cb;
  for (int i = 0; i < 3; ++i) {
    g.stride[i] = p.stride[i];
    g.pad[i] = p.pad[i];
    g.dil[i] = p.dil[i];
  }
  const int64_t total = p.out_elems();
  const int block = 256;
  const int64_t grid = (total + block - 1) / block;
  DEX_CHECK(grid < (int64_t(1) << 31), "two-source conv: ", total, " outputs exceed one grid");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  conv3d_two_source_kernel_v1<T><<<unsigned(grid), block, 0, s>>>(g, a, b, w, y, total);
  DEX_LAUNCH_CHECK("conv3d_two_source_kernel_v1", s);
}

void conv3d_fprop_two_source(const Conv3dParams& p, const float* a, int Ca, const float* b, int Cb, const float* w,
                             float* y, void* stream) {
  two_source_launch<float>(p, a, Ca, b, Cb, w, y, stream);
}

void conv3d_fprop_two_source_f16(const Conv3dParams& p, const void* a, int Ca, const void* b, int Cb, const void* w,
                                 void* y, void* stream) {
  two_source_launch<__half>(p, static_cast<const __half*>(a), Ca, static_cast<const __half*>(b), Cb,
                            static_cast<const __half*>(w), static_cast<__half*>(y), stream);
}

// ---- f16 plan pieces -------------------------------------------------------------------------------------
namespace {

constexpr int kStatX = 32, kStatY = 16;  // channels x voxel lanes per block

// Pass 1, block (c-chunk, n, part): voxels [s0, s1) of part `part` (P contiguous ranges); lane (tx, ty) walks
// s0 + ty, s0 + ty + kStatY, ... of channel c0 + tx. Two passes over the range (mean, then the sum of squared
// deviations, doubles), lanes added in order; writes (count, mean, M2) to partial[((n * C + c) * P + part) * 3].
__global__ void instance_norm_partials_f16_kernel(int C, int64_t S, int P, const __half* __restrict__ x,
                                                  double* __restrict__ partial) {
  __shared__ double red[kStatY][kStatX];
  __shared__ double mu_s[kStatX];
  const int c = blockIdx.x * kStatX + threadIdx.x;
  const int n = blockIdx.y, part = blockIdx.z;
  const int64_t s0 = S * part / P, s1 = S * (part + 1) / P;
  const __half* xn = x + int64_t(n) * S * C;
  double sum = 0;
  if (c < C)
    for (int64_t s = s0 + threadIdx.y; s < s1; s += kStatY) sum += double(__half2float(xn[s * C + c]));
  red[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0) {
    double t = 0;
    for (int j = 0; j < kStatY; ++j) t += red[j][threadIdx.x];
    mu_s[threadIdx.x] = s1 > s0 ? t / double(s1 - s0) : 0.0;
  }
  __syncthreads();
  const double mu = mu_s[threadIdx.x];
  double sq = 0;
  if (c < C)
    for (int64_t s = s0 + threadIdx.y; s < s1; s += kStatY) {
      const double d = double(__half2float(xn[s * C + c])) - mu;
      sq += d * d;
    }
  red[threadIdx.y][threadIdx.x] = sq;  // every lane read red before the second barrier above
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    double t = 0;
    for (int j = 0; j < kStatY; ++j) t += red[j][threadIdx.x];
    double* o = partial + ((int64_t(n) * C + c) * P + part) * 3;
    o[0] = double(s1 - s0);
    o[1] = mu;
    o[2] = t;
  }
}

// Pass 2, one thread per (n, c): Chan's combination of the P partials in part order (KERNELS.md §5.1).
__global__ void instance_norm_combine_kernel(int NC, int P, float eps, const double* __restrict__ partial,
                                             float* __restrict__ mean, float* __restrict__ rstd) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= NC) return;
  const double* q = partial + int64_t(i) * P * 3;
  double n = 0, mu = 0, m2 = 0;
  for (int p = 0; p < P; ++p) {
    const double nb = q[3 * p], mb = q[3 * p + 1], m2b = q[3 * p + 2];
    if (nb == 0) continue;
    const double tot = n + nb, d = mb - mu;
    mu += d * nb / tot;
    m2 += m2b + d * d * n * nb / tot;
    n = tot;
  }
  mean[i] = float(mu);
  rstd[i] = float(1.0 / sqrt(m2 / n + double(eps)));
}

// y = ((x - mean) * rstd) [* gamma + beta] [then LeakyReLU], in place, fp32 arithmetic.
__global__ void normalise_f16_kernel(int C, int64_t S, int64_t total, __half* __restrict__ x,
                                     const float* __restrict__ mean, const float* __restrict__ rstd,
                                     const float* __restrict__ gamma, const float* __restrict__ beta, int lrelu,
                                     float slope) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int c = int(i % C);
  const int n = int(i / (S * C));
  const bool affine = gamma != nullptr;
  const float v = fused::normalise_value(__half2float(x[i]), mean[n * C + c], rstd[n * C + c], affine,
                                         affine ? gamma[c] : 0.f, affine ? beta[c] : 0.f, lrelu != 0, slope);
  x[i] = __float2half_rn(v);
}

__global__ void add_f16_kernel(int64_t n, const __half* __restrict__ a, const __half* __restrict__ b,
                               __half* __restrict__ y, int lrelu, float slope) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = fused::f_add(__half2float(a[i]), __half2float(b[i]));
  if (lrelu) v = fused::lrelu_value(v, slope);
  y[i] = __float2half_rn(v);
}

// logits[v][k] = bias[k] + sum_c x[v][c] * w[k][c]  (fp16 in, fp32 weights, accumulation and logits)
__global__ void head_f16_kernel(int64_t voxels, int C, int K, const __half* __restrict__ x, const float* __restrict__ w,
                                const float* __restrict__ bias, float* __restrict__ z) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= voxels * K) return;
  const int k = int(i % K);
  const int64_t v = i / K;
  const __half* xv = x + v * C;
  const float* wk = w + int64_t(k) * C;
  float acc = 0.f;
  for (int c = 0; c < C; ++c) acc = fmaf(__half2float(xv[c]), wk[c], acc);
  z[i] = acc + bias[k];
}

unsigned blocks_for(int64_t n, int block) {
  const int64_t g = (n + block - 1) / block;
  DEX_CHECK(g < (int64_t(1) << 31), "plan f16 kernel: ", n, " elements exceed one grid");
  return unsigned(g);
}

}  // namespace

void instance_norm_stats_f16(int N, int C, int64_t S, float eps, const void* x, float* mean, float* rstd, int P,
                             void* partials, void* stream) {
  DEX_CHECK(P >= 1 && P <= 65535, "instance_norm_stats_f16: ", P, " partial ranges per channel");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dim3 grid((C + kStatX - 1) / kStatX, N, P), block(kStatX, kStatY);
  double* part = static_cast<double*>(partials);
  instance_norm_partials_f16_kernel<<<grid, block, 0, s>>>(C, S, P, static_cast<const __half*>(x), part);
  DEX_LAUNCH_CHECK("instance_norm_partials_f16_kernel", s);
  instance_norm_combine_kernel<<<blocks_for(int64_t(N) * C, 128), 128, 0, s>>>(N * C, P, eps, part, mean, rstd);
  DEX_LAUNCH_CHECK("instance_norm_combine_kernel", s);
}

void normalise_f16(int N, int C, int64_t S, void* x, const float* mean, const float* rstd, const float* gamma,
                   const float* beta, bool lrelu, float slope, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t total = int64_t(N) * S * C;
  normalise_f16_kernel<<<blocks_for(total, 256), 256, 0, s>>>(C, S, total, static_cast<__half*>(x), mean, rstd, gamma,
                                                              beta, lrelu ? 1 : 0, slope);
  DEX_LAUNCH_CHECK("normalise_f16_kernel", s);
}

void add_f16(int64_t n, const void* a, const void* b, void* y, bool lrelu, float slope, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  add_f16_kernel<<<blocks_for(n, 256), 256, 0, s>>>(n, static_cast<const __half*>(a), static_cast<const __half*>(b),
                                                    static_cast<__half*>(y), lrelu ? 1 : 0, slope);
  DEX_LAUNCH_CHECK("add_f16_kernel", s);
}

void head_f16(int64_t voxels, int C, int K, const void* x, const float* w, const float* bias, float* logits,
              void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  head_f16_kernel<<<blocks_for(voxels * K, 256), 256, 0, s>>>(voxels, C, K, static_cast<const __half*>(x), w, bias,
                                                              logits);
  DEX_LAUNCH_CHECK("head_f16_kernel", s);
}

void convert_to_f16(int64_t n, const float* src, void* dst, void* stream) {
  convert_f32_to_f16_cuda(n, src, static_cast<uint16_t*>(dst), static_cast<cudaStream_t>(stream));
}

void conv3d_fprop_f16(const Conv3dParams& p, const void* x, const void* w, void* y, void* stream) {
  conv3d_fprop_cuda(p, DType::F16, x, w, y, ConvVariant::Best, static_cast<cudaStream_t>(stream));
}

void conv_transpose3d_fprop_f16(const ConvTranspose3dParams& p, const void* x, const void* w, void* y, void* stream) {
  conv_transpose3d_fprop_cuda(p, DType::F16, x, w, y, ConvVariant::Best, static_cast<cudaStream_t>(stream));
}

void* stream_create() {
  cudaStream_t s = nullptr;
  DEX_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void stream_destroy(void* stream) noexcept { cudaStreamDestroy(static_cast<cudaStream_t>(stream)); }

bool sync_check() { return sync_check_enabled(); }

void reserve_instance_norm_workspace(const InstanceNormParams& p, void* stream) {
  stream_workspace(static_cast<cudaStream_t>(stream), instance_norm_workspace_bytes_cuda(p));
}

void capture_begin(void* stream) {
  DEX_CHECK(!sync_check_enabled(), "inference plan: DEX_SYNC_CHECK=1 synchronises after every launch, which a CUDA "
                                   "graph capture does not allow; unset it to run a CUDA plan");
  DEX_CUDA_CHECK(cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal));
}

void* capture_end(void* stream) {
  cudaGraph_t graph = nullptr;
  DEX_CUDA_CHECK(cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  DEX_CUDA_CHECK(err);
  return exec;
}

void capture_abort(void* stream) noexcept {
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
  cudaGetLastError();  // clear the capture's sticky-free error state for the next call
}

void graph_launch(void* graph, void* stream) {
  DEX_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), static_cast<cudaStream_t>(stream)));
}

void graph_destroy(void* graph) noexcept { cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)); }

std::vector<double> graph_replay_times_ms(void* graph, void* stream, int warmup, int runs) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaGraphExec_t g = static_cast<cudaGraphExec_t>(graph);
  for (int i = 0; i < warmup; ++i) DEX_CUDA_CHECK(cudaGraphLaunch(g, s));
  DEX_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  DEX_CUDA_CHECK(cudaEventCreate(&e0));
  DEX_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> t;
  try {
    for (int i = 0; i < runs; ++i) {
      DEX_CUDA_CHECK(cudaEventRecord(e0, s));
      DEX_CUDA_CHECK(cudaGraphLaunch(g, s));
      DEX_CUDA_CHECK(cudaEventRecord(e1, s));
      DEX_CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      DEX_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      t.push_back(ms);
    }
  } catch (...) {
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    throw;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return t;
}

}  // namespace plan_cuda
}  // namespace dex
