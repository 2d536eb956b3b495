// The conv cases of the autocast tests (tests/autograd/test_autocast.cpp on the CPU emulation,
// tests/cuda/test_amp_cuda.cpp on the CUDA backend): a cubic kernel k, stride s and padding p on every axis.
#pragma once
#include <cstdint>

#include "kernels/conv3d.h"
#include "kernels/conv_transpose3d.h"

namespace dex::testing {

struct ConvCase {
  const char* name;
  bool transposed;
  int N, C, K, D, H, W, k, s, p;
};

template <class P>
P params_of(const ConvCase& c) {
  P p;
  p.N = c.N; p.C = c.C; p.K = c.K; p.D = c.D; p.H = c.H; p.W = c.W;
  p.KD = p.KH = p.KW = c.k;
  for (int i = 0; i < 3; ++i) { p.stride[i] = c.s; p.pad[i] = c.p; }
  return p;
}
inline int64_t in_elems(const ConvCase& c) { return int64_t(c.N) * c.D * c.H * c.W * c.C; }
inline int64_t w_elems(const ConvCase& c) { return int64_t(c.K) * c.k * c.k * c.k * c.C; }
inline int64_t out_elems(const ConvCase& c) {
  return c.transposed ? params_of<ConvTranspose3dParams>(c).out_elems() : params_of<Conv3dParams>(c).out_elems();
}

}  // namespace dex::testing
