// CUDA version of kernels/dice_ce.h (MONAI DiceCELoss, softmax + one-hot, spec §9; CPU reference
// kernels/cpu/dice_ce.cpp), double math like the reference. Logits and dlogits are stored as T (float, __half,
// __nv_bfloat16; kernels/cuda/storage.cuh): widened on load, dlogits rounded once to T.
// Split sums (kernels/cuda/reduce_split.h): kernel 1 runs one 256-thread block per (voxel chunk, sample), a fixed
// number of chunks, and reduces per channel sum p*T, sum T, sum p and the CE sum in a fixed tree order into partials;
// kernel 2 (one thread per (sample, quantity)) adds the partials in chunk order (deterministic, no atomics); kernel 3
// writes dlogits per voxel from those sums. Partials and sums live in the stream's workspace (split_cuda.h). (v1 ran
// one block per sample: one SM for a whole volume.)
#include <cuda_runtime.h>

#include <vector>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce_split.h"
#include "kernels/cuda/split_cuda.h"
#include "kernels/cuda/storage.cuh"

namespace dex {
namespace {

constexpr int kMaxC = 16;
constexpr int kThreads = 256;

// sums[n][q]: q = c (I = sum p*T), C + c (G = sum T), 2C + c (P = sum p), 3C (CE sum), 3C + 1 (bad targets).
// Per-voxel math in double like the CPU reference; per-thread partials then a fixed tree order per quantity.
template <class T>
__device__ double softmax_voxel(const T* z, int C, double* p) {
  double mx = to_float(z[0]);
  for (int c = 1; c < C; ++c) mx = fmax(mx, double(to_float(z[c])));
  double sum = 0;
  for (int c = 0; c < C; ++c) sum += p[c] = exp(double(to_float(z[c])) - mx);
  for (int c = 0; c < C; ++c) p[c] /= sum;
  return mx + log(sum);
}

// grid (chunks, N): partial[n][k][q] for the voxels of chunk k of sample n.
template <class T>
__global__ void __launch_bounds__(kThreads) dice_ce_partials_kernel(int C, int64_t S, split::Plan plan,
                                                                    const T* logits, const uint8_t* target,
                                                                    double* partial) {
  __shared__ double red[kThreads];
  const int n = blockIdx.y, k = blockIdx.x;
  const int nq = 3 * C + 2;
  double acc[3 * kMaxC + 2];
  for (int q = 0; q < nq; ++q) acc[q] = 0;
  double p[kMaxC];
  int64_t b, e;
  split::chunk_range(plan, S, k, &b, &e);
  for (int64_t s = b + threadIdx.x; s < e; s += kThreads) {
    const T* z = logits + (int64_t(n) * S + s) * C;
    const int t = target[int64_t(n) * S + s];
    if (t >= C) {
      acc[3 * C + 1] += 1.0;
      continue;
    }
    const double lse = softmax_voxel(z, C, p);
    acc[3 * C] += lse - to_float(z[t]);
    for (int c = 0; c < C; ++c) acc[2 * C + c] += p[c];
    acc[t] += p[t];
    acc[C + t] += 1.0;
  }
  double* out = partial + (size_t(n) * plan.chunks + k) * nq;
  for (int q = 0; q < nq; ++q) {
    red[threadIdx.x] = acc[q];
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w >>= 1) {
      if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[q] = red[0];
    __syncthreads();
  }
}

// One thread per (sample, quantity): the partials in chunk order.
__global__ void dice_ce_combine_kernel(int N, int nq, int chunks, const double* partial, double* sums) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N * nq) return;
  const int n = i / nq, q = i % nq;
  double s = 0;
  for (int k = 0; k < chunks; ++k) s += partial[(size_t(n) * chunks + k) * nq + q];
  sums[i] = s;
}

// dz = p (g - sum_c p g) + wc (p - T), g_c = wd ((2 I + nr) / den^2 - [c == t] 2 / den), den = G + P + dr,
// wd = lambda_dice / (N C) * grad_scale, wc = lambda_ce / (N S) * grad_scale (the reference's formula).
template <class T>
__global__ void dice_ce_grad_kernel_v1(int N, int C, int64_t S, double nr, double dr, double wd, double wc,
                                       const T* logits, const uint8_t* target, const double* sums, T* dlogits) {
  const int64_t total = int64_t(N) * S;
  const int nq = 3 * C + 2;
  double p[kMaxC], g[kMaxC];
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int n = static_cast<int>(i / S);
    const int t = target[i];
    const double* sn = sums + int64_t(n) * nq;
    softmax_voxel(logits + i * C, C, p);
    double dot = 0;
    for (int c = 0; c < C; ++c) {
      const double den = sn[C + c] + sn[2 * C + c] + dr;
      g[c] = wd * ((2.0 * sn[c] + nr) / (den * den) - (c == t ? 2.0 / den : 0.0));
      dot += p[c] * g[c];
    }
    for (int c = 0; c < C; ++c)
      dlogits[i * C + c] =
          from_float<T>(static_cast<float>(p[c] * (g[c] - dot) + wc * (p[c] - (c == t ? 1.0 : 0.0))));
  }
}

template <class T>
DiceCEResult launch(const DiceCEParams& p, const T* logits, const uint8_t* target, T* dlogits, float grad_scale,
                    cudaStream_t stream) {
  DEX_CHECK(p.N >= 1 && p.S >= 1, "dice_ce_fwd_bwd_cuda: bad shape N=", p.N, " S=", p.S);
  DEX_CHECK(logits && target, "dice_ce_fwd_bwd_cuda: logits and target must not be null");
  DEX_CHECK(p.C >= 1 && p.C <= kMaxC, "dice_ce_fwd_bwd_cuda: C must be in [1, ", kMaxC, "], got ", p.C);
  const int nq = 3 * p.C + 2;
  DEX_CHECK(p.N <= 65535, "dice_ce_fwd_bwd_cuda: N must be <= 65535, got ", p.N);
  const split::Plan plan = split::make_plan(p.S, p.N);
  const size_t part = size_t(p.N) * plan.chunks * nq;
  auto* partial = static_cast<double*>(stream_workspace(stream, (part + size_t(p.N) * nq) * sizeof(double)));
  double* sums = partial + part;
  dice_ce_partials_kernel<T><<<dim3(plan.chunks, p.N), kThreads, 0, stream>>>(p.C, p.S, plan, logits, target,
                                                                               partial);
  DEX_LAUNCH_CHECK("dice_ce_partials_kernel", stream);
  dice_ce_combine_kernel<<<(p.N * nq + 127) / 128, 128, 0, stream>>>(p.N, nq, plan.chunks, partial, sums);
  DEX_LAUNCH_CHECK("dice_ce_combine_kernel", stream);
  std::vector<double> h(size_t(p.N) * nq);
  DEX_CUDA_CHECK(cudaMemcpyAsync(h.data(), sums, h.size() * sizeof(double), cudaMemcpyDeviceToHost, stream));
  DEX_CUDA_CHECK(cudaStreamSynchronize(stream));
  double dice = 0, ce = 0;
  for (int n = 0; n < p.N; ++n) {
    const double* sn = h.data() + size_t(n) * nq;
    DEX_INPUT_CHECK(sn[3 * p.C + 1] == 0, "dice_ce: ", static_cast<int64_t>(sn[3 * p.C + 1]),
                    " target labels of sample ", n, " are outside the valid classes [0, ", p.C,
                    ") (wrong label file or out_channels?)");
    for (int c = 0; c < p.C; ++c)
      dice += 1.0 - (2.0 * sn[c] + p.smooth_nr) / (sn[p.C + c] + sn[2 * p.C + c] + p.smooth_dr);
    ce += sn[3 * p.C];
  }
  DiceCEResult r;
  r.dice = dice / (double(p.N) * p.C);
  r.ce = ce / (double(p.N) * double(p.S));
  r.loss = p.lambda_dice * r.dice + p.lambda_ce * r.ce;
  if (dlogits) {
    const int64_t total = int64_t(p.N) * p.S;
    const double wd = p.lambda_dice / (double(p.N) * p.C) * grad_scale;
    const double wc = p.lambda_ce / (double(p.N) * double(p.S)) * grad_scale;
    dice_ce_grad_kernel_v1<T><<<grid_1d(total, 256), 256, 0, stream>>>(p.N, p.C, p.S, p.smooth_nr, p.smooth_dr, wd,
                                                                       wc, logits, target, sums, dlogits);
    DEX_LAUNCH_CHECK("dice_ce_grad_kernel_v1", stream);
  }
  return r;
}

}  // namespace

DiceCEResult dice_ce_fwd_bwd_cuda(const DiceCEParams& p, const float* logits, const uint8_t* target, float* dlogits,
                                  float grad_scale, cudaStream_t stream) {
  return launch(p, logits, target, dlogits, grad_scale, stream);
}

DiceCEResult dice_ce_fwd_bwd_cuda(const DiceCEParams& p, DType dtype, const void* logits, const uint8_t* target,
                                  void* dlogits, float grad_scale, cudaStream_t stream) {
  DiceCEResult r;
  storage_dispatch(dtype, "dice_ce_fwd_bwd_cuda", [&](auto t) {
    using T = decltype(t);
    r = launch(p, static_cast<const T*>(logits), target, static_cast<T*>(dlogits), grad_scale, stream);
  });
  return r;
}

}  // namespace dex
