// torch.optim.Adam semantics (amsgrad=False, L2 weight decay added to the gradient as PyTorch does).
#pragma once
#include <cstdint>
#include "kernels/common.h"

namespace dex {

struct AdamParams {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
};
// step: 1-based step count after this update. grad is multiplied by grad_scale first (1/loss_scale for AMP).
// m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
void adam_step_cpu(const AdamParams& a, int64_t step, int64_t n, float* param, const float* grad, float* m, float* v,
                   float grad_scale = 1.0f);

}  // namespace dex
