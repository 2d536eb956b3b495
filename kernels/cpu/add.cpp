// Elementwise add (residual connections), the CPU reference.
#include "kernels/elementwise.h"

namespace dex {

void add_fwd_cpu(int64_t n, const float* a, const float* b, float* y) {
  DEX_CHECK(n >= 0, "add_fwd_cpu: negative element count ", n);
  DEX_CHECK(n == 0 || (a && b && y), "add_fwd_cpu: a, b and y must not be null");
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void add_bwd_cpu(int64_t n, const float* dy, float* da, float* db, GradMode mode) {
  DEX_CHECK(n >= 0, "add_bwd_cpu: negative element count ", n);
  DEX_CHECK(n == 0 || dy, "add_bwd_cpu: dy must not be null");
  for (float* d : {da, db}) {
    if (!d) continue;
    for (int64_t i = 0; i < n; ++i) d[i] = mode == GradMode::Accumulate ? d[i] + dy[i] : dy[i];
  }
}

}  // namespace dex
