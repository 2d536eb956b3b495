// Instance norm, the CPU reference (spec §2.1): per sample n and channel c over the S spatial voxels,
// biased variance, y = (x - mean) * rstd * gamma + beta with rstd = 1/sqrt(var + eps). NDHWC: x[(n*S + s)*C + c].
// Plain loops in math order with double accumulators; two-pass mean/variance.
#include <cmath>
#include <vector>

#include "kernels/elementwise.h"

namespace dex {

static void check_params(const InstanceNormParams& p, const char* who) {
  DEX_CHECK(p.N >= 1 && p.C >= 1 && p.S >= 1, who, ": sizes must be positive, got N=", p.N, " C=", p.C, " S=", p.S);
  DEX_CHECK(p.eps >= 0.0f, who, ": eps must be >= 0, got ", p.eps);
}

void instance_norm_fwd_cpu(const InstanceNormParams& p, const float* x, const float* gamma, const float* beta,
                           float* y, float* mean, float* rstd) {
  check_params(p, "instance_norm_fwd_cpu");
  DEX_CHECK(x && y && mean && rstd, "instance_norm_fwd_cpu: x, y, mean and rstd must not be null");
  DEX_CHECK(!p.affine || (gamma && beta), "instance_norm_fwd_cpu: affine=true needs gamma and beta");
  const int C = p.C;
  const int64_t S = p.S;
  std::vector<double> mu(C), rs(C);
  for (int n = 0; n < p.N; ++n) {
    const float* xn = x + static_cast<int64_t>(n) * S * C;
    float* yn = y + static_cast<int64_t>(n) * S * C;
    std::vector<double> sum(C, 0.0), sq(C, 0.0);
    for (int64_t s = 0; s < S; ++s)
      for (int c = 0; c < C; ++c) sum[c] += xn[s * C + c];
    for (int c = 0; c < C; ++c) mu[c] = sum[c] / static_cast<double>(S);
    for (int64_t s = 0; s < S; ++s)
      for (int c = 0; c < C; ++c) {
        double d = xn[s * C + c] - mu[c];
        sq[c] += d * d;
      }
    for (int c = 0; c < C; ++c) {
      double var = sq[c] / static_cast<double>(S);  // biased
      rs[c] = 1.0 / std::sqrt(var + static_cast<double>(p.eps));
      mean[n * C + c] = static_cast<float>(mu[c]);
      rstd[n * C + c] = static_cast<float>(rs[c]);
    }
    // y may alias x: every statistic of sample n is computed before its first write.
    for (int64_t s = 0; s < S; ++s)
      for (int c = 0; c < C; ++c) {
        double v = (xn[s * C + c] - mu[c]) * rs[c];
        if (p.affine) v = v * gamma[c] + beta[c];
        yn[s * C + c] = static_cast<float>(v);
      }
  }
}

// dx = rstd * (g - mean_s(g) - xhat * mean_s(g * xhat)) with g = dy * gamma, xhat = (x - mean) * rstd;
// dgamma[c] += sum_{n,s} dy * xhat, dbeta[c] += sum_{n,s} dy.
void instance_norm_bwd_cpu(const InstanceNormParams& p, const float* x, const float* dy, const float* mean,
                           const float* rstd, const float* gamma, float* dx, float* dgamma, float* dbeta,
                           GradMode mode) {
  check_params(p, "instance_norm_bwd_cpu");
  DEX_CHECK(x && dy && mean && rstd, "instance_norm_bwd_cpu: x, dy, mean and rstd must not be null");
  DEX_CHECK(!p.affine || (gamma && dgamma && dbeta), "instance_norm_bwd_cpu: affine=true needs gamma, dgamma, dbeta");
  const int C = p.C;
  const int64_t S = p.S;
  std::vector<double> dg_total(C, 0.0), db_total(C, 0.0);
  for (int n = 0; n < p.N; ++n) {
    const int64_t off = static_cast<int64_t>(n) * S * C;
    const float* xn = x + off;
    const float* dyn = dy + off;
    std::vector<double> sum_g(C, 0.0), sum_gx(C, 0.0), sum_dy(C, 0.0), sum_dyx(C, 0.0);
    for (int64_t s = 0; s < S; ++s)
      for (int c = 0; c < C; ++c) {
        double xhat = (static_cast<double>(xn[s * C + c]) - mean[n * C + c]) * rstd[n * C + c];
        double d = dyn[s * C + c];
        double g = p.affine ? d * gamma[c] : d;
        sum_g[c] += g;
        sum_gx[c] += g * xhat;
        sum_dy[c] += d;
        sum_dyx[c] += d * xhat;
      }
    for (int c = 0; c < C; ++c) {
      dg_total[c] += sum_dyx[c];
      db_total[c] += sum_dy[c];
    }
    if (!dx) continue;
    float* dxn = dx + off;
    for (int64_t s = 0; s < S; ++s)
      for (int c = 0; c < C; ++c) {
        const double r = rstd[n * C + c];
        double xhat = (static_cast<double>(xn[s * C + c]) - mean[n * C + c]) * r;
        double g = p.affine ? static_cast<double>(dyn[s * C + c]) * gamma[c] : dyn[s * C + c];
        double v = r * (g - sum_g[c] / S - xhat * (sum_gx[c] / S));
        float& out = dxn[s * C + c];
        out = mode == GradMode::Accumulate ? static_cast<float>(out + v) : static_cast<float>(v);
      }
  }
  if (p.affine)
    for (int c = 0; c < C; ++c) {
      dgamma[c] = static_cast<float>(dgamma[c] + dg_total[c]);
      dbeta[c] = static_cast<float>(dbeta[c] + db_total[c]);
    }
}

}  // namespace dex
