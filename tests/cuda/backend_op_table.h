// The backend-op table's harness (STYLE.md §2), shared by the table files in tests/cuda (test_backend_ops.cpp: the
// fp32 rows and the convolutions; test_backend_ops16.cpp: the 16-bit storage rows of the other ops). An OpCase row
// holds its inputs and outputs (dtype, size, value ranges), the CPU reference and the op under test; run_pass() runs
// one pass of a row: inputs from the row's seed, the CPU reference on the same (rounded) inputs, the op twice into
// NaN-poisoned outputs inside NaN guard bands, then guard bands, the comparison (bit-exact when rtol = 0) and
// determinism (both runs bitwise equal). See test_backend_ops.cpp's header for the tolerance derivation.
#pragma once
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "kernels/arena.h"
#include "kernels/backend.h"
#include "kernels/half.h"
#include "tests/testing.h"

namespace dex {
namespace op_table {

using HostIn = std::vector<std::vector<float>>;
using Scalars = std::vector<double>;

constexpr double kU32 = 5.9604644775390625e-08;  // 2^-24
constexpr double kU16 = 4.8828125e-04;           // 2^-11
constexpr double kUBf16 = 3.90625e-03;           // 2^-8
constexpr double kSigma = 4.0;
constexpr int64_t kGuard = 64;  // guard elements on each side of every output

inline double unit(DType t) { return t == DType::F16 ? kU16 : t == DType::BF16 ? kUBf16 : kU32; }
inline double tol(DType out, double k_reduce) { return 2 * unit(out) + kSigma * std::sqrt(k_reduce) * kU32; }

struct In {
  DType type;
  int64_t n;
  float lo = -1.f, hi = 1.f;  // random pass
  int ilo = -1, ihi = 1;      // exactness pass (and always for U8)
};
struct Out {
  DType type;
  int64_t n;
  bool preset = false;        // starts from given values (accumulate / in place) instead of NaN poison
  float lo = -1.f, hi = 1.f;  // preset values' range (random pass)
  int ilo = -1, ihi = 1;      // preset values' range (exactness pass)
  bool compare = true;        // false: scratch, only its guard bands are checked
};
struct OpCase {
  std::string name;
  std::vector<In> ins;
  std::vector<Out> outs;
  std::function<Scalars(const HostIn& in, HostIn& out)> cpu;
  // The op under test. Rows marked `table` call only b's entries, so they also run on the CPU backend (the harness
  // self-check); the others call the *_cuda functions directly (b is the CUDA table then, `s` a cudaStream_t).
  std::function<Scalars(const Backend& b, const std::vector<const void*>& in, const std::vector<void*>& out, void* s)>
      cuda;
  double rtol = 0;       // random pass; 0 = bit-exact
  double nmse = 0;       // random pass NMSE ceiling
  bool exact_pass = true;
  double scalar_rtol = 0;
  uint64_t seed = 1;
  bool table = false;
};

inline float round_to(DType t, float v) {
  switch (t) {
    case DType::F16: return round_f16(v);
    case DType::BF16: return round_bf16(v);
    case DType::U8: return static_cast<float>(static_cast<uint8_t>(v));
    default: return v;
  }
}
inline std::vector<uint8_t> to_bytes(DType t, const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * dtype_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    switch (t) {
      case DType::F32: std::memcpy(&b[i * 4], &v[i], 4); break;
      case DType::F16: { uint16_t h = f32_to_f16_bits(v[i]); std::memcpy(&b[i * 2], &h, 2); break; }
      case DType::BF16: { uint16_t h = f32_to_bf16_bits(v[i]); std::memcpy(&b[i * 2], &h, 2); break; }
      case DType::U8: b[i] = static_cast<uint8_t>(v[i]); break;
      case DType::I32: { int32_t x = static_cast<int32_t>(v[i]); std::memcpy(&b[i * 4], &x, 4); break; }
    }
  }
  return b;
}
inline std::vector<float> from_bytes(DType t, const uint8_t* b, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (t) {
      case DType::F32: std::memcpy(&v[i], b + i * 4, 4); break;
      case DType::F16: { uint16_t h; std::memcpy(&h, b + i * 2, 2); v[i] = f16_bits_to_f32(h); break; }
      case DType::BF16: { uint16_t h; std::memcpy(&h, b + i * 2, 2); v[i] = bf16_bits_to_f32(h); break; }
      case DType::U8: v[i] = b[i]; break;
      case DType::I32: { int32_t x; std::memcpy(&x, b + i * 4, 4); v[i] = static_cast<float>(x); break; }
    }
  }
  return v;
}
inline std::vector<float> make_values(DType t, int64_t n, uint64_t seed, bool exact, float lo, float hi, int ilo, int ihi) {
  std::vector<float> v = (exact || t == DType::U8 || t == DType::I32) ? testing::random_ints(n, seed, ilo, ihi)
                                                                        : testing::random_vector(n, seed, lo, hi);
  for (auto& x : v) x = round_to(t, x);
  return v;
}

struct RunOut {
  std::vector<std::vector<uint8_t>> bodies;
  Scalars scalars;
};

// One run on backend b into guarded, poisoned outputs (memory through b's allocator and copy, so the same harness
// drives the CUDA and the CPU tables); returns the output bodies. Fails the test on a touched guard band.
inline RunOut run_on(const Backend& b, const OpCase& c, const std::vector<std::vector<uint8_t>>& in_bytes,
              const std::vector<std::vector<uint8_t>>& preset_bytes) {
  std::vector<Buffer> din, dout;
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  for (const auto& bytes : in_bytes) {
    din.emplace_back(*b.allocator, std::max<size_t>(bytes.size(), 1));
    if (!bytes.empty()) b.copy(din.back().data(), b.device, bytes.data(), Device::CPU, bytes.size(), nullptr);
    in_ptrs.push_back(din.back().data());
  }
  for (size_t o = 0; o < c.outs.size(); ++o) {
    const size_t es = dtype_size(c.outs[o].type), body = static_cast<size_t>(c.outs[o].n) * es, g = kGuard * es;
    std::vector<uint8_t> host(body + 2 * g, 0xFF);  // NaN bit patterns (0xFF.. is a NaN for f32/f16/bf16)
    if (c.outs[o].preset) std::memcpy(host.data() + g, preset_bytes[o].data(), body);
    dout.emplace_back(*b.allocator, host.size());
    b.copy(dout.back().data(), b.device, host.data(), Device::CPU, host.size(), nullptr);
    out_ptrs.push_back(dout.back().as<uint8_t>() + g);
  }
  RunOut r;
  r.scalars = c.cuda(b, in_ptrs, out_ptrs, nullptr);
  b.synchronize(nullptr);
  for (size_t o = 0; o < c.outs.size(); ++o) {
    const size_t es = dtype_size(c.outs[o].type), body = static_cast<size_t>(c.outs[o].n) * es, g = kGuard * es;
    std::vector<uint8_t> host(body + 2 * g);
    b.copy(host.data(), Device::CPU, dout[o].data(), b.device, host.size(), nullptr);
    size_t bad = 0;
    for (size_t i = 0; i < g; ++i) bad += (host[i] != 0xFF) + (host[g + body + i] != 0xFF);
    EXPECT_EQ(bad, 0u) << c.name << ": output " << o << " has " << bad << " guard-band bytes overwritten";
    r.bodies.emplace_back(host.begin() + g, host.begin() + g + body);
  }
  return r;
}

inline void run_pass(const Backend& b, const OpCase& c, bool exact) {
  SCOPED_TRACE(std::string(exact ? "exactness pass" : "random pass") + ", seed " + std::to_string(c.seed));
  HostIn hin, hout;
  std::vector<std::vector<uint8_t>> in_bytes, preset_bytes;
  for (size_t i = 0; i < c.ins.size(); ++i) {
    const In& s = c.ins[i];
    hin.push_back(make_values(s.type, s.n, c.seed * 131 + i, exact, s.lo, s.hi, s.ilo, s.ihi));
    in_bytes.push_back(to_bytes(s.type, hin.back()));
  }
  for (size_t o = 0; o < c.outs.size(); ++o) {
    const Out& s = c.outs[o];
    hout.push_back(s.preset ? make_values(s.type, s.n, c.seed * 131 + 100 + o, exact, s.lo, s.hi, s.ilo, s.ihi)
                            : std::vector<float>(static_cast<size_t>(s.n), 0.f));
    preset_bytes.push_back(to_bytes(s.type, hout.back()));
  }
  const Scalars ref_scalars = c.cpu(hin, hout);
  const RunOut r1 = run_on(b, c, in_bytes, preset_bytes);
  const RunOut r2 = run_on(b, c, in_bytes, preset_bytes);
  for (size_t o = 0; o < c.outs.size(); ++o) {
    if (!c.outs[o].compare) continue;
    const std::vector<float> got = from_bytes(c.outs[o].type, r1.bodies[o].data(), c.outs[o].n);
    std::vector<double> ref(hout[o].begin(), hout[o].end());
    const double rtol = exact ? 0.0 : c.rtol;
    const double atol = rtol * testing::rms(ref);
    const auto cmp = testing::compare(got.data(), hout[o].data(), c.outs[o].n, rtol, atol, exact ? 0.0 : c.nmse);
    EXPECT_TRUE(cmp.ok) << c.name << " output " << o << ": " << cmp.message;
    if (cmp.ok) std::cout << "[ compare  ] " << c.name << " output " << o << ": " << cmp.message << "\n";
    EXPECT_TRUE(r1.bodies[o] == r2.bodies[o]) << c.name << " output " << o << ": two runs differ (not deterministic)";
  }
  ASSERT_EQ(r1.scalars.size(), ref_scalars.size());
  for (size_t i = 0; i < ref_scalars.size(); ++i) {
    EXPECT_NEAR(r1.scalars[i], ref_scalars[i], c.scalar_rtol * std::fabs(ref_scalars[i])) << c.name << " scalar " << i;
    EXPECT_EQ(r1.scalars[i], r2.scalars[i]) << c.name << " scalar " << i << ": two runs differ";
  }
}

// Short forms used by the rows.
inline const char* dt(DType t) { return dtype_name(t); }
inline cudaStream_t S(void* s) { return static_cast<cudaStream_t>(s); }
template <class T>
const T* cin(const void* p) { return static_cast<const T*>(p); }
template <class T>
T* cout_(void* p) { return static_cast<T*>(p); }

// A row name as a valid GoogleTest parameter name.
inline std::string param_name(std::string s) {
  for (auto& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

// The body of each table's GPU test: the row on the CUDA backend against its CPU reference, the exactness pass first
// where the row has one; skips, saying why, without a device.
inline void run_cuda_row(const OpCase& c) {
  std::string why;
  if (!backend_available(Device::CUDA, &why)) GTEST_SKIP() << "CUDA backend not available: " << why;
  if (c.exact_pass) run_pass(backend(Device::CUDA), c, true);
  run_pass(backend(Device::CUDA), c, false);
}

}  // namespace op_table
}  // namespace dex
