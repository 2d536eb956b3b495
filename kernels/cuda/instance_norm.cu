// CUDA instance norm (kernels/elementwise.h; CPU reference kernels/cpu/instance_norm.cpp), double math like the
// reference. Storage: x, y, dy, dx as T (float, __half, __nv_bfloat16: kernels/cuda/storage.cuh); gamma, beta,
// mean, rstd, dgamma, dbeta fp32. v1: one (32 channels x 32 voxel slices) block per (channel chunk, sample); two
// passes (mean, then centred sum of squares) reduced in fixed order (column_sum), so results are bitwise
// reproducible. Launchers: fp32 in ops_cuda.h, the storage-dtype ones in ops16_cuda.h.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/cuda/ops_cuda.h"
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

// The checks and launches shared by the fp32 and the storage-dtype entry points; `who` names the entry point.
template <class T>
void launch_fwd(const char* who, const InstanceNormParams& p, const T* x, const float* gamma, const float* beta,
                T* y, float* mean, float* rstd, cudaStream_t stream) {
  DEX_CHECK(p.N >= 1 && p.C >= 1 && p.S >= 1, who, ": sizes must be positive, got N=", p.N, " C=", p.C, " S=", p.S);
  DEX_CHECK(p.eps >= 0.0f, who, ": eps must be >= 0, got ", p.eps);
  DEX_CHECK(x && y && mean && rstd, who, ": x, y, mean and rstd must not be null");
  DEX_CHECK(!p.affine || (gamma && beta), who, ": affine=true needs gamma and beta");
  const dim3 grid((p.C + 31) / 32, p.N), block(32, kBY);
  instance_norm_fwd_kernel_v1<T><<<grid, block, 0, stream>>>(p.C, p.S, p.eps, p.affine, x, gamma, beta, y, mean, rstd);
  DEX_LAUNCH_CHECK("instance_norm_fwd_kernel_v1", stream);
}

template <class T>
void launch_bwd(const char* who, const InstanceNormParams& p, const T* x, const T* dy, const float* mean,
                const float* rstd, const float* gamma, T* dx, float* dgamma, float* dbeta, GradMode mode,
                cudaStream_t stream) {
  DEX_CHECK(p.N >= 1 && p.C >= 1 && p.S >= 1, who, ": sizes must be positive, got N=", p.N, " C=", p.C, " S=", p.S);
  DEX_CHECK(x && dy && mean && rstd, who, ": x, dy, mean and rstd must not be null");
  DEX_CHECK(!p.affine || (gamma && dgamma && dbeta), who, ": affine=true needs gamma, dgamma, dbeta");
  const dim3 grid((p.C + 31) / 32, p.affine ? 1 : p.N), block(32, kBY);
  instance_norm_bwd_kernel_v1<T><<<grid, block, 0, stream>>>(p.N, p.C, p.S, p.affine, mode == GradMode::Accumulate,
                                                             x, dy, mean, rstd, gamma, dx, dgamma, dbeta);
  DEX_LAUNCH_CHECK("instance_norm_bwd_kernel_v1", stream);
}

}  // namespace

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

}  // namespace dex
