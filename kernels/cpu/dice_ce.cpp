// MONAI DiceCELoss(to_onehot_y=True, softmax=True) with the bundle's defaults (spec §9), the CPU reference.
// Forward and the analytic gradient w.r.t. the logits, all in double; NDHWC logits [N][S][C], target [N][S].
//   p = softmax_c(z), T = onehot(t)
//   Dice_nc = 1 - (2 I_nc + nr) / (G_nc + P_nc + dr), I = sum_s p*T, G = sum_s T, P = sum_s p
//   dice = mean_{n,c} Dice_nc;  CE = mean_{n,s} (logsumexp_c z - z_t);  loss = ld*dice + lc*CE
// Gradient: dDice_nc/dp_s = -2 T_s / den + (2 I + nr) / den^2 (den = G + P + dr), chained through the softmax
// (dz = p * (g - sum_c p*g)); dCE/dz = (p - T) / (N*S). An empty foreground (G = 0) needs no special case.
#include <cmath>
#include <vector>

#include "kernels/dice_ce.h"

namespace dex {

namespace {
// Softmax of one voxel in double; returns logsumexp.
double softmax_voxel(const float* z, int C, double* p) {
  double mx = z[0];
  for (int c = 1; c < C; ++c) mx = std::fmax(mx, z[c]);
  double sum = 0.0;
  for (int c = 0; c < C; ++c) sum += p[c] = std::exp(z[c] - mx);
  for (int c = 0; c < C; ++c) p[c] /= sum;
  return mx + std::log(sum);
}
}  // namespace

DiceCEResult dice_ce_fwd_bwd_cpu(const DiceCEParams& p, const float* logits, const uint8_t* target, float* dlogits,
                                 float grad_scale) {
  DEX_CHECK(p.N >= 1 && p.C >= 1 && p.C <= 256 && p.S >= 1, "dice_ce_fwd_bwd_cpu: need N >= 1, 1 <= C <= 256, S >= 1; got N=",
            p.N, " C=", p.C, " S=", p.S);
  DEX_CHECK(logits && target, "dice_ce_fwd_bwd_cpu: logits and target must not be null");
  const int N = p.N, C = p.C;
  const int64_t S = p.S;
  for (int n = 0; n < N; ++n)
    for (int64_t s = 0; s < S; ++s) {
      const int t = target[n * S + s];
      DEX_INPUT_CHECK(t < C, "dice_ce: target label ", t, " at sample ", n, " voxel ", s,
                      " is outside the valid classes [0, ", C, ") (wrong label file or out_channels?)");
    }

  std::vector<double> I(static_cast<size_t>(N) * C, 0.0), G(I.size(), 0.0), P(I.size(), 0.0), prob(C);
  double ce_sum = 0.0;
  for (int n = 0; n < N; ++n)
    for (int64_t s = 0; s < S; ++s) {
      const float* z = logits + (n * S + s) * C;
      const int t = target[n * S + s];
      double lse = softmax_voxel(z, C, prob.data());
      ce_sum += lse - z[t];
      for (int c = 0; c < C; ++c) P[n * C + c] += prob[c];
      I[n * C + t] += prob[t];
      G[n * C + t] += 1.0;
    }
  DiceCEResult r;
  double dice_sum = 0.0;
  for (size_t k = 0; k < I.size(); ++k) dice_sum += 1.0 - (2.0 * I[k] + p.smooth_nr) / (G[k] + P[k] + p.smooth_dr);
  r.dice = dice_sum / (static_cast<double>(N) * C);
  r.ce = ce_sum / (static_cast<double>(N) * S);
  r.loss = p.lambda_dice * r.dice + p.lambda_ce * r.ce;
  if (!dlogits) return r;

  const double wd = p.lambda_dice / (static_cast<double>(N) * C) * grad_scale;
  const double wc = p.lambda_ce / (static_cast<double>(N) * S) * grad_scale;
  std::vector<double> g(C);
  for (int n = 0; n < N; ++n)
    for (int64_t s = 0; s < S; ++s) {
      const float* z = logits + (n * S + s) * C;
      const int t = target[n * S + s];
      softmax_voxel(z, C, prob.data());
      double dot = 0.0;
      for (int c = 0; c < C; ++c) {  // dDice/dp
        const size_t k = static_cast<size_t>(n) * C + c;
        const double den = G[k] + P[k] + p.smooth_dr;
        g[c] = wd * ((2.0 * I[k] + p.smooth_nr) / (den * den) - (c == t ? 2.0 / den : 0.0));
        dot += prob[c] * g[c];
      }
      for (int c = 0; c < C; ++c) {
        double d = prob[c] * (g[c] - dot) + wc * (prob[c] - (c == t ? 1.0 : 0.0));
        dlogits[(n * S + s) * C + c] = static_cast<float>(d);
      }
    }
  return r;
}

}  // namespace dex
