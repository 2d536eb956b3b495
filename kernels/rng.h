// Counter-based RNG (Philox4x32-10): value = f(seed, stream, index), identical on host and device and
// independent of thread order (STYLE.md §7). Derive one stream id per purpose from the global seed.
#pragma once
#include <cmath>
#include <cstdint>
#include "kernels/common.h"

namespace dex {

struct Philox4 { uint32_t v[4]; };

DEX_HD inline Philox4 philox4x32_10(uint64_t counter_hi_lo, uint64_t counter2, uint64_t key) {
  uint32_t c0 = static_cast<uint32_t>(counter_hi_lo), c1 = static_cast<uint32_t>(counter_hi_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter2), c3 = static_cast<uint32_t>(counter2 >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = static_cast<uint32_t>(p1);
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = static_cast<uint32_t>(p0);
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// 32 random bits number `index` of stream `stream` under `seed`.
DEX_HD inline uint32_t rng_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  return philox4x32_10(index >> 2, stream, seed).v[index & 3];
}
// 64 random bits (two 32-bit words of the same block).
DEX_HD inline uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t index) {
  Philox4 r = philox4x32_10(index >> 1, stream, seed);
  return (index & 1) ? (static_cast<uint64_t>(r.v[2]) << 32 | r.v[3]) : (static_cast<uint64_t>(r.v[0]) << 32 | r.v[1]);
}
// Uniform in [0, 1) with 24 bits (float) / 53 bits (double).
DEX_HD inline float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return static_cast<float>(rng_u32(seed, stream, index) >> 8) * (1.0f / 16777216.0f);
}
DEX_HD inline double rng_uniform_f64(uint64_t seed, uint64_t stream, uint64_t index) {
  return static_cast<double>(rng_u64(seed, stream, index) >> 11) * (1.0 / 9007199254740992.0);
}
// Standard normal via Box-Muller on two 53-bit uniforms (uses indices 2*index and 2*index+1 of the stream).
DEX_HD inline double rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  double u1 = rng_uniform_f64(seed, stream, 2 * index);
  double u2 = rng_uniform_f64(seed, stream, 2 * index + 1);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// Seeds per purpose, derived from one global seed.
enum class RngStream : uint64_t { Init = 1, DataOrder = 2, Augment = 3, Clicks = 4, Phantom = 5, Test = 6, Interaction = 7 };
DEX_HD inline uint64_t rng_stream(RngStream purpose, uint64_t sub = 0) {
  return (static_cast<uint64_t>(purpose) << 48) ^ sub;
}

// A sequential host-side generator over the counter RNG, for code that draws a variable number of values
// (click sampling, augmentation). Its state is (seed, stream, next index): saving those three resumes it.
class Rng {
 public:
  Rng(uint64_t seed = 0, uint64_t stream = 0, uint64_t index = 0) : m_seed(seed), m_stream(stream), m_index(index) {}
  uint32_t next_u32() { return rng_u32(m_seed, m_stream, m_index++); }
  uint64_t next_u64() { return rng_u64(m_seed, m_stream, m_index++); }
  double uniform() { return rng_uniform_f64(m_seed, m_stream, m_index++); }
  double normal() {  // Box-Muller on two consecutive uniforms
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
  }
  // Uniform integer in [0, n) without modulo bias.
  uint64_t below(uint64_t n) {
    if (n <= 1) { next_u64(); return 0; }
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do { x = next_u64(); } while (x >= limit);
    return x % n;
  }
  uint64_t seed() const { return m_seed; }
  uint64_t stream() const { return m_stream; }
  uint64_t index() const { return m_index; }

 private:
  uint64_t m_seed, m_stream, m_index;
};

}  // namespace dex
