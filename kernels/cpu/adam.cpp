// torch.optim.Adam (amsgrad=False, maximize=False, single-tensor path), the CPU reference, in double per element:
//   g = grad*grad_scale + wd*param;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//   param -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)      (eps outside the sqrt, as PyTorch)
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "kernels/adam.h"

namespace dex {

// The hyperparameters arrive as float, but PyTorch computes with the Python doubles they were written as
// (0.999f is 0.99900001287..., so 1 - beta2 would be off by 1.3e-5 relative). Recover that decimal: the
// shortest decimal that round-trips the float, read back as a double.
static double as_written(float f) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf) - 1, f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

void adam_step_cpu(const AdamParams& a, int64_t step, int64_t n, float* param, const float* grad, float* m, float* v,
                   float grad_scale) {
  DEX_CHECK(step >= 1, "adam_step_cpu: step is 1-based, got ", step);
  DEX_CHECK(n >= 0, "adam_step_cpu: negative element count ", n);
  DEX_CHECK(n == 0 || (param && grad && m && v), "adam_step_cpu: param, grad, m and v must not be null");
  DEX_CHECK(a.lr >= 0.0f && a.eps >= 0.0f && a.weight_decay >= 0.0f, "adam_step_cpu: lr, eps, weight_decay must be >= 0");
  DEX_CHECK(a.beta1 >= 0.0f && a.beta1 < 1.0f && a.beta2 >= 0.0f && a.beta2 < 1.0f,
            "adam_step_cpu: betas must be in [0, 1), got ", a.beta1, ", ", a.beta2);
  const double b1 = as_written(a.beta1), b2 = as_written(a.beta2), eps = as_written(a.eps);
  const double lr = as_written(a.lr), wd = as_written(a.weight_decay);
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(step)));
  const double step_size = lr / bc1;
  for (int64_t i = 0; i < n; ++i) {
    double g = static_cast<double>(grad[i]) * grad_scale;
    if (wd != 0.0) g += wd * param[i];
    const double mi = b1 * m[i] + (1.0 - b1) * g;
    const double vi = b2 * v[i] + (1.0 - b2) * g * g;
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
    const double denom = std::sqrt(vi) / bc2_sqrt + eps;
    param[i] = static_cast<float>(param[i] - step_size * mi / denom);
  }
}

}  // namespace dex
