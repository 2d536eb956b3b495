// CUDA instance norm (kernels/elementwise.h; CPU reference kernels/cpu/instance_norm.cpp), fp32 storage, double math
// like the reference. v1: one (32 channels x 32 voxel slices) block per (channel chunk, sample); two passes (mean,
// then centred sum of squares) reduced in fixed order (column_sum), so results are bitwise reproducible.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {
namespace {

constexpr int kBY = 32;

// grid (ceil(C/32), N). y may alias x: the block reads all of its (sample, channels) before writing any of it.
__global__ void __launch_bounds__(32 * kBY) instance_norm_fwd_kernel_v1(int C, int64_t S, float eps, bool affine, const float* x,
                                            const float* gamma, const float* beta, float* y, float* mean_out,
                                            float* rstd_out) {
  __shared__ double red[32 * kBY];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int n = blockIdx.y;
  const bool active = c < C;
  const float* xs = x + int64_t(n) * S * C;
  double s = 0;
  if (active)
    for (int64_t v = threadIdx.y; v < S; v += kBY) s += xs[v * C + c];
  const double mu = column_sum<kBY>(s, red) / double(S);
  double m2 = 0;
  if (active)
    for (int64_t v = threadIdx.y; v < S; v += kBY) {
      const double d = xs[v * C + c] - mu;
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
  float* ys = y + int64_t(n) * S * C;
  for (int64_t v = threadIdx.y; v < S; v += kBY) {
    double o = (xs[v * C + c] - mu) * rs;
    if (affine) o = o * g + b;
    ys[v * C + c] = static_cast<float>(o);
  }
}

// grid (ceil(C/32), affine ? 1 : N): with affine one block loops over the samples in order so dgamma/dbeta are summed
// without atomics. dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy * gamma; dx may be null (parameter grads only).
__global__ void __launch_bounds__(32 * kBY) instance_norm_bwd_kernel_v1(int N, int C, int64_t S, bool affine, bool accumulate, const float* x,
                                            const float* dy, const float* mean, const float* rstd,
                                            const float* gamma, float* dx, float* dgamma, float* dbeta) {
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
        const double d = dy[base + v * C + c];
        const double xh = (double(x[base + v * C + c]) - mu) * rs;
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
      const double xh = (double(x[i]) - mu) * rs;
      const double val = rs * (double(dy[i]) * gam - mg - xh * mgx);
      dx[i] = accumulate ? static_cast<float>(dx[i] + val) : static_cast<float>(val);
    }
  }
  if (affine && active && threadIdx.y == 0) {
    dgamma[c] = static_cast<float>(dgamma[c] + dg_total);
    dbeta[c] = static_cast<float>(dbeta[c] + db_total);
  }
}

}  // namespace

void instance_norm_fwd_cuda(const InstanceNormParams& p, const float* x, const float* gamma, const float* beta,
                            float* y, float* mean, float* rstd, cudaStream_t stream) {
  DEX_CHECK(p.N >= 1 && p.C >= 1 && p.S >= 1, "instance_norm_fwd_cuda: sizes must be positive, got N=", p.N,
            " C=", p.C, " S=", p.S);
  DEX_CHECK(p.eps >= 0.0f, "instance_norm_fwd_cuda: eps must be >= 0, got ", p.eps);
  DEX_CHECK(x && y && mean && rstd, "instance_norm_fwd_cuda: x, y, mean and rstd must not be null");
  DEX_CHECK(!p.affine || (gamma && beta), "instance_norm_fwd_cuda: affine=true needs gamma and beta");
  const dim3 grid((p.C + 31) / 32, p.N), block(32, kBY);
  instance_norm_fwd_kernel_v1<<<grid, block, 0, stream>>>(p.C, p.S, p.eps, p.affine, x, gamma, beta, y, mean, rstd);
  DEX_LAUNCH_CHECK("instance_norm_fwd_kernel_v1", stream);
}

void instance_norm_bwd_cuda(const InstanceNormParams& p, const float* x, const float* dy, const float* mean,
                            const float* rstd, const float* gamma, float* dx, float* dgamma, float* dbeta,
                            GradMode mode, cudaStream_t stream) {
  DEX_CHECK(p.N >= 1 && p.C >= 1 && p.S >= 1, "instance_norm_bwd_cuda: sizes must be positive, got N=", p.N,
            " C=", p.C, " S=", p.S);
  DEX_CHECK(x && dy && mean && rstd, "instance_norm_bwd_cuda: x, dy, mean and rstd must not be null");
  DEX_CHECK(!p.affine || (gamma && dgamma && dbeta), "instance_norm_bwd_cuda: affine=true needs gamma, dgamma, dbeta");
  const dim3 grid((p.C + 31) / 32, p.affine ? 1 : p.N), block(32, kBY);
  instance_norm_bwd_kernel_v1<<<grid, block, 0, stream>>>(p.N, p.C, p.S, p.affine, mode == GradMode::Accumulate, x,
                                                          dy, mean, rstd, gamma, dx, dgamma, dbeta);
  DEX_LAUNCH_CHECK("instance_norm_bwd_kernel_v1", stream);
}

}  // namespace dex
