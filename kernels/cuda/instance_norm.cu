// CUDA instance norm (kernels/elementwise.h; CPU reference kernels/cpu/instance_norm.cpp), double math like the
// reference. Storage: x, y, dy, dx as T (float, __half, __nv_bfloat16: kernels/cuda/storage.cuh); gamma, beta,
// mean, rstd, dgamma, dbeta fp32. Launchers: fp32 in ops_cuda.h, the storage-dtype ones in ops16_cuda.h (both run
// the split variant, workspace from stream_workspace()); explicit-workspace and v1 entry points in split_cuda.h.
// v1: one (32 channels x 32 voxel slices) block per (channel group, sample); two passes (mean, then centred sum of
//     squares) reduced in fixed order (column_sum). At 32 ch x 128^3 that is ONE block on one SM: kept for comparison.
// split (v2, the default): the scheme of kernels/cuda/reduce_split.h. fwd: pass 1 per (chunk, channel group, sample)
//     block shifted sums (double) -> workspace; pass 2 one thread per (sample, channel) adds them in chunk order into
//     mean / rstd (fp32 outputs, double copies in the workspace); pass 3 normalises every chunk in parallel. bwd: pass
//     1 per-chunk sum dy and sum dy*xhat; pass 2 one thread per channel adds them in chunk order per sample and the
//     samples in order into dgamma / dbeta; pass 3 writes dx. Fixed order everywhere, so bitwise reproducible.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce_split.h"
#include "kernels/cuda/split_cuda.h"
#include "kernels/cuda/storage.cuh"

namespace dex {
namespace {

constexpr int kBY = 32;

// grid (ceil(C/32), N). y may alias x: the block reads all of its (sample, channels) before writing any of it.
template <class T>
__global__ void __launch_bounds__(32 * kBY) instance_norm_fwd_kernel_v1(int C, int64_t S, float eps, bool affine,
                                                                        const T* x, const float* gamma,
                                                                        const float* beta, T* y, float* mean_out,
                                                                        float* rstd_out) {
  __shared__ double red[32 * kBY];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int n = blockIdx.y;
  const bool active = c < C;
  const T* xs = x + int64_t(n) * S * C;
  double s = 0;
  if (active)
    for (int64_t v = threadIdx.y; v < S; v += kBY) s += to_float(xs[v * C + c]);
  const double mu = column_sum<kBY>(s, red) / double(S);
  double m2 = 0;
  if (active)
    for (int64_t v = threadIdx.y; v < S; v += kBY) {
      const double d = to_float(xs[v * C + c]) - mu;
      m2 += d * d;
    }
  const double var = column_sum<kBY>(m2, red) / double(S);  // biased
  const double rs = 1.0 / sqrt(var + double(eps));
  if (!active) return;
  if (threadIdx.y == 0) {
    mean_out[int64_t(n) * C + c] = static_cast<float>(mu);
    rstd_out[int64_t(n) * C + c] = static_cast<float>(rs);
  }
  const double g = affine ? gamma[c] : 1.0, b = affine ? beta[c] : 0.0;
  T* ys = y + int64_t(n) * S * C;
  for (int64_t v = threadIdx.y; v < S; v += kBY) {
    double o = (to_float(xs[v * C + c]) - mu) * rs;
    if (affine) o = o * g + b;
    ys[v * C + c] = from_float<T>(static_cast<float>(o));
  }
}

// grid (ceil(C/32), affine ? 1 : N): with affine one block loops over the samples in order so dgamma/dbeta are summed
// without atomics. dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy * gamma; dx may be null (parameter grads only).
template <class T>
__global__ void __launch_bounds__(32 * kBY) instance_norm_bwd_kernel_v1(int N, int C, int64_t S, bool affine,
                                                                        bool accumulate, const T* x, const T* dy,
                                                                        const float* mean, const float* rstd,
                                                                        const float* gamma, T* dx, float* dgamma,
                                                                        float* dbeta) {
  __shared__ double red[32 * kBY];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const bool active = c < C;
  const int n0 = affine ? 0 : blockIdx.y, n1 = affine ? N : blockIdx.y + 1;
  const double gam = affine && active ? gamma[c] : 1.0;
  double dg_total = 0, db_total = 0;
  for (int n = n0; n < n1; ++n) {
    const int64_t base = int64_t(n) * S * C;
    const double mu = active ? mean[int64_t(n) * C + c] : 0.0;
    const double rs = active ? rstd[int64_t(n) * C + c] : 0.0;
    double sdy = 0, sdyx = 0;
    if (active)
      for (int64_t v = threadIdx.y; v < S; v += kBY) {
        const double d = to_float(dy[base + v * C + c]);
        const double xh = (double(to_float(x[base + v * C + c])) - mu) * rs;
        sdy += d;
        sdyx += d * xh;
      }
    const double sum_dy = column_sum<kBY>(sdy, red);
    const double sum_dyx = column_sum<kBY>(sdyx, red);
    dg_total += sum_dyx;
    db_total += sum_dy;
    if (!active || !dx) continue;
    const double mg = gam * sum_dy / double(S), mgx = gam * sum_dyx / double(S);
    for (int64_t v = threadIdx.y; v < S; v += kBY) {
      const int64_t i = base + v * C + c;
      const double xh = (double(to_float(x[i])) - mu) * rs;
      const double val = rs * (double(to_float(dy[i])) * gam - mg - xh * mgx);
      dx[i] = from_float<T>(accumulate ? static_cast<float>(to_float(dx[i]) + val) : static_cast<float>(val));
    }
  }
  if (affine && active && threadIdx.y == 0) {
    dgamma[c] = static_cast<float>(dgamma[c] + dg_total);
    dbeta[c] = static_cast<float>(dbeta[c] + db_total);
  }
}


// ---- split variant ------------------------------------------------------------------------------------------------
// Workspace layout (doubles): P1, P2 [N][chunks][C] partials, then D1, D2 [N][C] (fwd: double mean / rstd; bwd:
// gamma * mean(dy) and gamma * mean(dy * xhat) per sample).
struct SplitLayout {
  split::Plan plan;
  int groups = 1;  // channel groups of 32
  size_t part = 0;  // doubles in P1 (and in P2)
  size_t per_nc = 0;
  size_t doubles() const { return 2 * part + 2 * per_nc; }
};
SplitLayout split_layout(const InstanceNormParams& p) {
  SplitLayout l;
  l.groups = (p.C + 31) / 32;
  l.plan = split::make_plan(p.S, int64_t(l.groups) * p.N);
  l.part = size_t(p.N) * l.plan.chunks * p.C;
  l.per_nc = size_t(p.N) * p.C;
  return l;
}

// grid (chunks, groups, N), block (32, kBY). Shift K = the sample's voxel 0 of the channel.
template <class T>
__global__ void __launch_bounds__(32 * kBY) instance_norm_fwd_partials_kernel(int C, int64_t S, split::Plan plan,
                                                                             const T* x, double* P1, double* P2) {
  __shared__ double red[32 * kBY];
  const int c = blockIdx.y * 32 + threadIdx.x;
  const int n = blockIdx.z, k = blockIdx.x;
  const bool active = c < C;
  const T* xs = x + int64_t(n) * S * C;
  int64_t b, e;
  split::chunk_range(plan, S, k, &b, &e);
  double s1 = 0, s2 = 0;
  if (active) {
    const double K = to_float(xs[c]);
    for (int64_t v = b + threadIdx.y; v < e; v += kBY) {
      const double d = double(to_float(xs[v * C + c])) - K;
      s1 += d;
      s2 += d * d;
    }
  }
  s1 = column_sum<kBY>(s1, red);
  s2 = column_sum<kBY>(s2, red);
  if (active && threadIdx.y == 0) {
    const size_t i = (size_t(n) * plan.chunks + k) * C + c;
    P1[i] = s1;
    P2[i] = s2;
  }
}

// One thread per (sample, channel): the partials in chunk order.
template <class T>
__global__ void instance_norm_fwd_combine_kernel(int N, int C, int64_t S, int chunks, float eps, const T* x,
                                                 const double* P1, const double* P2, float* mean_out, float* rstd_out,
                                                 double* Dm, double* Dr) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= int64_t(N) * C) return;
  const int n = static_cast<int>(i / C), c = static_cast<int>(i % C);
  double s1 = 0, s2 = 0;
  for (int k = 0; k < chunks; ++k) {
    const size_t j = (size_t(n) * chunks + k) * C + c;
    s1 += P1[j];
    s2 += P2[j];
  }
  double mu, rs;
  split::norm_stats(S, to_float(x[int64_t(n) * S * C + c]), s1, s2, double(eps), &mu, &rs);
  mean_out[i] = static_cast<float>(mu);
  rstd_out[i] = static_cast<float>(rs);
  Dm[i] = mu;
  Dr[i] = rs;
}

// grid (chunks, groups, N): y = (x - mu) rs [* g + b]; y may alias x (each element read, then written by one thread).
template <class T>
__global__ void __launch_bounds__(32 * kBY) instance_norm_fwd_apply_kernel(int C, int64_t S, split::Plan plan,
                                                                         bool affine, const T* x, const float* gamma,
                                                                         const float* beta, const double* Dm,
                                                                         const double* Dr, T* y) {
  const int c = blockIdx.y * 32 + threadIdx.x;
  const int n = blockIdx.z;
  if (c >= C) return;
  int64_t b, e;
  split::chunk_range(plan, S, blockIdx.x, &b, &e);
  const double mu = Dm[int64_t(n) * C + c], rs = Dr[int64_t(n) * C + c];
  const double g = affine ? gamma[c] : 1.0, bb = affine ? beta[c] : 0.0;
  const int64_t base = int64_t(n) * S * C + c;
  for (int64_t v = b + threadIdx.y; v < e; v += kBY) {
    double o = (to_float(x[base + v * C]) - mu) * rs;
    if (affine) o = o * g + bb;
    y[base + v * C] = from_float<T>(static_cast<float>(o));
  }
}

// grid (chunks, groups, N): per-chunk sum dy and sum dy * xhat.
template <class T>
__global__ void __launch_bounds__(32 * kBY) instance_norm_bwd_partials_kernel(int C, int64_t S, split::Plan plan,
                                                                             const T* x, const T* dy,
                                                                             const float* mean, const float* rstd,
                                                                             double* P1, double* P2) {
  __shared__ double red[32 * kBY];
  const int c = blockIdx.y * 32 + threadIdx.x;
  const int n = blockIdx.z, k = blockIdx.x;
  const bool active = c < C;
  int64_t b, e;
  split::chunk_range(plan, S, k, &b, &e);
  double sdy = 0, sdyx = 0;
  if (active) {
    const double mu = mean[int64_t(n) * C + c], rs = rstd[int64_t(n) * C + c];
    const int64_t base = int64_t(n) * S * C + c;
    for (int64_t v = b + threadIdx.y; v < e; v += kBY) {
      const double d = to_float(dy[base + v * C]);
      const double xh = (double(to_float(x[base + v * C])) - mu) * rs;
      sdy += d;
      sdyx += d * xh;
    }
  }
  sdy = column_sum<kBY>(sdy, red);
  sdyx = column_sum<kBY>(sdyx, red);
  if (active && threadIdx.y == 0) {
    const size_t i = (size_t(n) * plan.chunks + k) * C + c;
    P1[i] = sdy;
    P2[i] = sdyx;
  }
}

// One thread per channel: per sample the partials in chunk order (-> D1 = gamma mean(dy), D2 = gamma mean(dy xhat)),
// the samples in order into dgamma / dbeta.
__global__ void instance_norm_bwd_combine_kernel(int N, int C, int64_t S, int chunks, bool affine, const float* gamma,
                                                 const double* P1, const double* P2, double* D1, double* D2,
                                                 float* dgamma, float* dbeta) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double gam = affine ? gamma[c] : 1.0;
  double dg_total = 0, db_total = 0;
  for (int n = 0; n < N; ++n) {
    double sdy = 0, sdyx = 0;
    for (int k = 0; k < chunks; ++k) {
      const size_t j = (size_t(n) * chunks + k) * C + c;
      sdy += P1[j];
      sdyx += P2[j];
    }
    D1[int64_t(n) * C + c] = gam * sdy / double(S);
    D2[int64_t(n) * C + c] = gam * sdyx / double(S);
    dg_total += sdyx;
    db_total += sdy;
  }
  if (affine) {
    dgamma[c] = static_cast<float>(dgamma[c] + dg_total);
    dbeta[c] = static_cast<float>(dbeta[c] + db_total);
  }
}

// grid (chunks, groups, N): dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy * gamma.
template <class T>
__global__ void __launch_bounds__(32 * kBY) instance_norm_bwd_apply_kernel(int C, int64_t S, split::Plan plan,
                                                                         bool affine, bool accumulate, const T* x,
                                                                         const T* dy, const float* mean,
                                                                         const float* rstd, const float* gamma,
                                                                         const double* D1, const double* D2, T* dx) {
  const int c = blockIdx.y * 32 + threadIdx.x;
  const int n = blockIdx.z;
  if (c >= C) return;
  int64_t b, e;
  split::chunk_range(plan, S, blockIdx.x, &b, &e);
  const int64_t nc = int64_t(n) * C + c;
  const double mu = mean[nc], rs = rstd[nc], gam = affine ? gamma[c] : 1.0;
  const double mg = D1[nc], mgx = D2[nc];
  const int64_t base = int64_t(n) * S * C + c;
  for (int64_t v = b + threadIdx.y; v < e; v += kBY) {
    const int64_t i = base + v * C;
    const double xh = (double(to_float(x[i])) - mu) * rs;
    const double val = rs * (double(to_float(dy[i])) * gam - mg - xh * mgx);
    dx[i] = from_float<T>(accumulate ? static_cast<float>(to_float(dx[i]) + val) : static_cast<float>(val));
  }
}

// The checks and launches shared by the fp32 and the storage-dtype entry points; `who` names the entry point.
void check_fwd(const char* who, const InstanceNormParams& p, const void* x, const float* gamma, const float* beta,
               const void* y, const float* mean, const float* rstd) {
  DEX_CHECK(p.N >= 1 && p.C >= 1 && p.S >= 1, who, ": sizes must be positive, got N=", p.N, " C=", p.C, " S=", p.S);
  DEX_CHECK(p.N <= 65535, who, ": N must be <= 65535, got ", p.N);
  DEX_CHECK(p.eps >= 0.0f, who, ": eps must be >= 0, got ", p.eps);
  DEX_CHECK(x && y && mean && rstd, who, ": x, y, mean and rstd must not be null");
  DEX_CHECK(!p.affine || (gamma && beta), who, ": affine=true needs gamma and beta");
}
void check_bwd(const char* who, const InstanceNormParams& p, const void* x, const void* dy, const float* mean,
               const float* rstd, const float* gamma, const float* dgamma, const float* dbeta) {
  DEX_CHECK(p.N >= 1 && p.C >= 1 && p.S >= 1, who, ": sizes must be positive, got N=", p.N, " C=", p.C, " S=", p.S);
  DEX_CHECK(p.N <= 65535, who, ": N must be <= 65535, got ", p.N);
  DEX_CHECK(x && dy && mean && rstd, who, ": x, dy, mean and rstd must not be null");
  DEX_CHECK(!p.affine || (gamma && dgamma && dbeta), who, ": affine=true needs gamma, dgamma, dbeta");
}

template <class T>
void launch_fwd_v1(const char* who, const InstanceNormParams& p, const T* x, const float* gamma, const float* beta,
                   T* y, float* mean, float* rstd, cudaStream_t stream) {
  check_fwd(who, p, x, gamma, beta, y, mean, rstd);
  const dim3 grid((p.C + 31) / 32, p.N), block(32, kBY);
  instance_norm_fwd_kernel_v1<T><<<grid, block, 0, stream>>>(p.C, p.S, p.eps, p.affine, x, gamma, beta, y, mean, rstd);
  DEX_LAUNCH_CHECK("instance_norm_fwd_kernel_v1", stream);
}

template <class T>
void launch_bwd_v1(const char* who, const InstanceNormParams& p, const T* x, const T* dy, const float* mean,
                   const float* rstd, const float* gamma, T* dx, float* dgamma, float* dbeta, GradMode mode,
                   cudaStream_t stream) {
  check_bwd(who, p, x, dy, mean, rstd, gamma, dgamma, dbeta);
  const dim3 grid((p.C + 31) / 32, p.affine ? 1 : p.N), block(32, kBY);
  instance_norm_bwd_kernel_v1<T><<<grid, block, 0, stream>>>(p.N, p.C, p.S, p.affine, mode == GradMode::Accumulate,
                                                             x, dy, mean, rstd, gamma, dx, dgamma, dbeta);
  DEX_LAUNCH_CHECK("instance_norm_bwd_kernel_v1", stream);
}

template <class T>
void launch_fwd_split(const char* who, const InstanceNormParams& p, const T* x, const float* gamma, const float* beta,
                      T* y, float* mean, float* rstd, void* workspace, cudaStream_t stream) {
  check_fwd(who, p, x, gamma, beta, y, mean, rstd);
  const SplitLayout l = split_layout(p);
  DEX_CHECK(workspace, who, ": workspace must not be null (", l.doubles() * sizeof(double), " bytes)");
  double* P1 = static_cast<double*>(workspace);
  double* P2 = P1 + l.part;
  double* D1 = P2 + l.part;
  double* D2 = D1 + l.per_nc;
  const dim3 grid(l.plan.chunks, l.groups, p.N), block(32, kBY);
  instance_norm_fwd_partials_kernel<T><<<grid, block, 0, stream>>>(p.C, p.S, l.plan, x, P1, P2);
  DEX_LAUNCH_CHECK("instance_norm_fwd_partials_kernel", stream);
  const int64_t nc = int64_t(p.N) * p.C;
  instance_norm_fwd_combine_kernel<T><<<unsigned((nc + 127) / 128), 128, 0, stream>>>(
      p.N, p.C, p.S, l.plan.chunks, p.eps, x, P1, P2, mean, rstd, D1, D2);
  DEX_LAUNCH_CHECK("instance_norm_fwd_combine_kernel", stream);
  instance_norm_fwd_apply_kernel<T><<<grid, block, 0, stream>>>(p.C, p.S, l.plan, p.affine, x, gamma, beta, D1, D2, y);
  DEX_LAUNCH_CHECK("instance_norm_fwd_apply_kernel", stream);
}

template <class T>
void launch_bwd_split(const char* who, const InstanceNormParams& p, const T* x, const T* dy, const float* mean,
                      const float* rstd, const float* gamma, T* dx, float* dgamma, float* dbeta, GradMode mode,
                      void* workspace, cudaStream_t stream) {
  check_bwd(who, p, x, dy, mean, rstd, gamma, dgamma, dbeta);
  const SplitLayout l = split_layout(p);
  DEX_CHECK(workspace, who, ": workspace must not be null (", l.doubles() * sizeof(double), " bytes)");
  double* P1 = static_cast<double*>(workspace);
  double* P2 = P1 + l.part;
  double* D1 = P2 + l.part;
  double* D2 = D1 + l.per_nc;
  const dim3 grid(l.plan.chunks, l.groups, p.N), block(32, kBY);
  instance_norm_bwd_partials_kernel<T><<<grid, block, 0, stream>>>(p.C, p.S, l.plan, x, dy, mean, rstd, P1, P2);
  DEX_LAUNCH_CHECK("instance_norm_bwd_partials_kernel", stream);
  instance_norm_bwd_combine_kernel<<<unsigned((p.C + 127) / 128), 128, 0, stream>>>(
      p.N, p.C, p.S, l.plan.chunks, p.affine, gamma, P1, P2, D1, D2, dgamma, dbeta);
  DEX_LAUNCH_CHECK("instance_norm_bwd_combine_kernel", stream);
  if (!dx) return;
  instance_norm_bwd_apply_kernel<T><<<grid, block, 0, stream>>>(p.C, p.S, l.plan, p.affine,
                                                                mode == GradMode::Accumulate, x, dy, mean, rstd,
                                                                gamma, D1, D2, dx);
  DEX_LAUNCH_CHECK("instance_norm_bwd_apply_kernel", stream);
}

template <class T>
void launch_fwd(const char* who, const InstanceNormParams& p, const T* x, const float* gamma, const float* beta,
                T* y, float* mean, float* rstd, cudaStream_t stream) {
  check_fwd(who, p, x, gamma, beta, y, mean, rstd);
  launch_fwd_split(who, p, x, gamma, beta, y, mean, rstd,
                   stream_workspace(stream, instance_norm_workspace_bytes_cuda(p)), stream);
}

template <class T>
void launch_bwd(const char* who, const InstanceNormParams& p, const T* x, const T* dy, const float* mean,
                const float* rstd, const float* gamma, T* dx, float* dgamma, float* dbeta, GradMode mode,
                cudaStream_t stream) {
  check_bwd(who, p, x, dy, mean, rstd, gamma, dgamma, dbeta);
  launch_bwd_split(who, p, x, dy, mean, rstd, gamma, dx, dgamma, dbeta, mode,
                   stream_workspace(stream, instance_norm_workspace_bytes_cuda(p)), stream);
}

}  // namespace

size_t instance_norm_workspace_bytes_cuda(const InstanceNormParams& p) {
  DEX_CHECK(p.N >= 1 && p.C >= 1 && p.S >= 1, "instance_norm_workspace_bytes_cuda: sizes must be positive, got N=",
            p.N, " C=", p.C, " S=", p.S);
  return split_layout(p).doubles() * sizeof(double);
}

void instance_norm_fwd_cuda(const InstanceNormParams& p, const float* x, const float* gamma, const float* beta,
                            float* y, float* mean, float* rstd, cudaStream_t stream) {
  launch_fwd("instance_norm_fwd_cuda", p, x, gamma, beta, y, mean, rstd, stream);
}

void instance_norm_bwd_cuda(const InstanceNormParams& p, const float* x, const float* dy, const float* mean,
                            const float* rstd, const float* gamma, float* dx, float* dgamma, float* dbeta,
                            GradMode mode, cudaStream_t stream) {
  launch_bwd("instance_norm_bwd_cuda", p, x, dy, mean, rstd, gamma, dx, dgamma, dbeta, mode, stream);
}

void instance_norm_fwd_cuda(const InstanceNormParams& p, DType dtype, const void* x, const float* gamma,
                            const float* beta, void* y, float* mean, float* rstd, cudaStream_t stream) {
  const char* who = "instance_norm_fwd_cuda";
  storage_dispatch(dtype, who, [&](auto t) {
    using T = decltype(t);
    launch_fwd(who, p, static_cast<const T*>(x), gamma, beta, static_cast<T*>(y), mean, rstd, stream);
  });
}

void instance_norm_bwd_cuda(const InstanceNormParams& p, DType dtype, const void* x, const void* dy, const float* mean,
                            const float* rstd, const float* gamma, void* dx, float* dgamma, float* dbeta,
                            GradMode mode, cudaStream_t stream) {
  const char* who = "instance_norm_bwd_cuda";
  storage_dispatch(dtype, who, [&](auto t) {
    using T = decltype(t);
    launch_bwd(who, p, static_cast<const T*>(x), static_cast<const T*>(dy), mean, rstd, gamma, static_cast<T*>(dx),
               dgamma, dbeta, mode, stream);
  });
}

void instance_norm_fwd_split_cuda(const InstanceNormParams& p, DType dtype, const void* x, const float* gamma,
                                  const float* beta, void* y, float* mean, float* rstd, void* workspace,
                                  cudaStream_t stream) {
  const char* who = "instance_norm_fwd_split_cuda";
  storage_dispatch(dtype, who, [&](auto t) {
    using T = decltype(t);
    launch_fwd_split(who, p, static_cast<const T*>(x), gamma, beta, static_cast<T*>(y), mean, rstd, workspace,
                     stream);
  });
}

void instance_norm_bwd_split_cuda(const InstanceNormParams& p, DType dtype, const void* x, const void* dy,
                                  const float* mean, const float* rstd, const float* gamma, void* dx, float* dgamma,
                                  float* dbeta, GradMode mode, void* workspace, cudaStream_t stream) {
  const char* who = "instance_norm_bwd_split_cuda";
  storage_dispatch(dtype, who, [&](auto t) {
    using T = decltype(t);
    launch_bwd_split(who, p, static_cast<const T*>(x), static_cast<const T*>(dy), mean, rstd, gamma,
                     static_cast<T*>(dx), dgamma, dbeta, mode, workspace, stream);
  });
}

void instance_norm_fwd_v1_cuda(const InstanceNormParams& p, DType dtype, const void* x, const float* gamma,
                               const float* beta, void* y, float* mean, float* rstd, cudaStream_t stream) {
  const char* who = "instance_norm_fwd_v1_cuda";
  storage_dispatch(dtype, who, [&](auto t) {
    using T = decltype(t);
    launch_fwd_v1(who, p, static_cast<const T*>(x), gamma, beta, static_cast<T*>(y), mean, rstd, stream);
  });
}

void instance_norm_bwd_v1_cuda(const InstanceNormParams& p, DType dtype, const void* x, const void* dy,
                               const float* mean, const float* rstd, const float* gamma, void* dx, float* dgamma,
                               float* dbeta, GradMode mode, cudaStream_t stream) {
  const char* who = "instance_norm_bwd_v1_cuda";
  storage_dispatch(dtype, who, [&](auto t) {
    using T = decltype(t);
    launch_bwd_v1(who, p, static_cast<const T*>(x), static_cast<const T*>(dy), mean, rstd, gamma,
                  static_cast<T*>(dx), dgamma, dbeta, mode, stream);
  });
}

}  // namespace dex
