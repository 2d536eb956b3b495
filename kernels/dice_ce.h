// MONAI DiceCELoss(to_onehot_y=True, softmax=True) with the bundle's defaults (spec §9):
// p = softmax_c(z); T = onehot(t); Dice_nc = 1 - (2 sum p*T + nr)/(sum T + sum p + dr); dice = mean over n, c;
// CE = mean over n and voxels of -log softmax(z)[t]; loss = lambda_dice*dice + lambda_ce*CE.
#pragma once
#include <cstdint>
#include "kernels/common.h"

namespace dex {

struct DiceCEParams {
  int N = 1, C = 2;
  int64_t S = 0;  // spatial voxels per sample
  double smooth_nr = 1e-5, smooth_dr = 1e-5;
  double lambda_dice = 1.0, lambda_ce = 1.0;
};
struct DiceCEResult {
  double loss = 0, dice = 0, ce = 0;
};
// logits: NDHWC [N][S][C]; target: [N][S] class indices in [0, C). If dlogits is non-null it receives
// d(loss * grad_scale)/d(logits) (overwritten). Throws on a target value outside [0, C).
DiceCEResult dice_ce_fwd_bwd_cpu(const DiceCEParams& p, const float* logits, const uint8_t* target, float* dlogits,
                                 float grad_scale = 1.0f);

}  // namespace dex
