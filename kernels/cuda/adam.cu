// CUDA Adam step (kernels/adam.h; CPU reference kernels/cpu/adam.cpp): torch.optim.Adam, amsgrad=False, L2 weight
// decay added to the gradient. v1: one element per thread, grid-stride, in double like the reference, with the
// hyperparameters read as the decimals they were written as (see as_written), so CPU and CUDA agree to rounding.
#include <cuda_runtime.h>

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace dex {
namespace {
// The shortest decimal that round-trips the float, read back as a double (0.999f -> 0.999), as the CPU reference.
double as_written(float f) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf) - 1, f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

__global__ void adam_step_kernel_v1(int64_t n, double step_size, double b1, double b2, double eps, double wd,
                                    double bc2_sqrt, float grad_scale, float* param, const float* grad, float* m,
                                    float* v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    double g = double(grad[i]) * grad_scale;
    if (wd != 0.0) g += wd * param[i];
    const double mi = b1 * m[i] + (1.0 - b1) * g;
    const double vi = b2 * v[i] + (1.0 - b2) * g * g;
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
    param[i] = static_cast<float>(param[i] - step_size * mi / (sqrt(vi) / bc2_sqrt + eps));
  }
}
}  // namespace

void adam_step_cuda(const AdamParams& a, int64_t step, int64_t n, float* param, const float* grad, float* m, float* v,
                    float grad_scale, cudaStream_t stream) {
  DEX_CHECK(step >= 1, "adam_step_cuda: step is 1-based, got ", step);
  DEX_CHECK(n >= 0, "adam_step_cuda: negative element count ", n);
  DEX_CHECK(a.lr >= 0.0f && a.eps >= 0.0f && a.weight_decay >= 0.0f, "adam_step_cuda: lr, eps, weight_decay must be >= 0");
  DEX_CHECK(a.beta1 >= 0.0f && a.beta1 < 1.0f && a.beta2 >= 0.0f && a.beta2 < 1.0f,
            "adam_step_cuda: betas must be in [0, 1), got ", a.beta1, ", ", a.beta2);
  if (n == 0) return;
  DEX_CHECK(param && grad && m && v, "adam_step_cuda: param, grad, m and v must not be null");
  const double b1 = as_written(a.beta1), b2 = as_written(a.beta2), eps = as_written(a.eps);
  const double lr = as_written(a.lr), wd = as_written(a.weight_decay);
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(step)));
  adam_step_kernel_v1<<<grid_1d(n, 256), 256, 0, stream>>>(n, lr / bc1, b1, b2, eps, wd, bc2_sqrt, grad_scale, param,
                                                           grad, m, v);
  DEX_LAUNCH_CHECK("adam_step_kernel_v1", stream);
}

}  // namespace dex
