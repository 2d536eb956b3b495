// Helpers shared by the DynUNet tests (tests/layers, tests/train): the tiny parity configuration of
// scripts/gen_fixtures_dynunet.py, fixture -> StateDict, NCDHW <-> NDHWC.
#pragma once
#include <string>
#include <vector>

#include "layers/dynunet.h"
#include "tests/testing.h"

namespace dex::testing {

// filters 4-8-16-32, strides 1, 2, 2, (2,2,1), kernels 3, upsample kernels 2, 2, (2,2,1) (TINY in the script).
inline DynUNetConfig tiny_dynunet_config() {
  DynUNetConfig c;
  c.kernel_sizes = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  c.strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}, {2, 2, 1}};
  c.upsample_kernel_sizes = {{2, 2, 2}, {2, 2, 2}, {2, 2, 1}};
  c.filters = {4, 8, 16, 32};
  return c;
}

// Every fixture tensor named prefix + <name> as a StateDict entry <name>.
inline StateDict fixture_state_dict(const std::map<std::string, FixtureTensor>& fx, const std::string& prefix) {
  StateDict sd;
  for (const auto& kv : fx)
    if (kv.first.rfind(prefix, 0) == 0) sd[kv.first.substr(prefix.size())] = NamedTensor{kv.second.shape, kv.second.f32()};
  return sd;
}

// [N][C][S] -> [N][S][C] (S = D*H*W), as float.
template <class T>
std::vector<float> ncs_to_nsc(const std::vector<T>& in, int64_t N, int64_t C, int64_t S) {
  std::vector<float> out(in.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) out[(n * S + s) * C + c] = static_cast<float>(in[(n * C + c) * S + s]);
  return out;
}
template <class T>
std::vector<double> nsc_to_ncs(const T* in, int64_t N, int64_t C, int64_t S) {
  std::vector<double> out(static_cast<size_t>(N * C * S));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) out[(n * C + c) * S + s] = static_cast<double>(in[(n * S + s) * C + c]);
  return out;
}

// The tiny fixture's batch (dynunet/tiny.fix): input as NDHWC, target as class indices.
struct TinyBatch {
  std::map<std::string, FixtureTensor> fx = load_fixture(test_data("dynunet/tiny.fix"));
  int N, C, D, H, W;
  std::vector<float> x;
  std::vector<uint8_t> target;
  TinyBatch() {
    const auto& s = fx.at("x").shape;
    N = int(s[0]); C = int(s[1]); D = int(s[2]); H = int(s[3]); W = int(s[4]);
    x = ncs_to_nsc(fx.at("x").data, N, C, int64_t(D) * H * W);
    target.assign(fx.at("target").data.begin(), fx.at("target").data.end());
  }
};

}  // namespace dex::testing
