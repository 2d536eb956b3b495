// Runtime: checks, arena, RNG, fp16/bf16 conversion.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "kernels/arena.h"
#include "kernels/common.h"
#include "kernels/half.h"
#include "kernels/rng.h"

namespace dex {

TEST(runtime, check_throws_with_expression_file_and_message) {
  try {
    int rank = 2;
    DEX_CHECK(rank == 3, "expected rank 3, got ", rank);
    FAIL() << "no throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("rank == 3"), std::string::npos) << m;
    EXPECT_NE(m.find("test_runtime.cpp"), std::string::npos) << m;
    EXPECT_NE(m.find("expected rank 3, got 2"), std::string::npos) << m;
  }
}

TEST(runtime, arena_aligns_resets_and_reports_peak) {
  Arena a(host_allocator(), 4096, "test");
  void* p1 = a.allocate(10);
  void* p2 = a.allocate(300);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p1) % kArenaAlign, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p2) % kArenaAlign, 0u);
  EXPECT_EQ(static_cast<char*>(p2) - static_cast<char*>(p1), 256);
  EXPECT_EQ(a.used(), 256u + 512u);
  a.reset();
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(a.peak(), 768u);
  EXPECT_EQ(a.allocate(1), p1);  // reuse after reset
  EXPECT_THROW(a.allocate(1 << 20), Error);
}

TEST(runtime, arena_growing_mode_chains_blocks_and_reuses_them) {
  Arena a(host_allocator(), 0, "grow");
  char* big = static_cast<char*>(a.allocate(100u << 20));
  char* next = static_cast<char*>(a.allocate(70u << 20));
  ASSERT_NE(big, nullptr);
  ASSERT_NE(next, nullptr);
  size_t cap = a.capacity();
  a.reset();
  a.allocate(100u << 20);
  a.allocate(70u << 20);
  EXPECT_EQ(a.capacity(), cap) << "second step of the same shape must not grow the arena";
}

TEST(runtime, rng_is_a_pure_function_of_seed_stream_index) {
  EXPECT_EQ(rng_u32(1, 2, 3), rng_u32(1, 2, 3));
  EXPECT_NE(rng_u32(1, 2, 3), rng_u32(1, 2, 4));
  EXPECT_NE(rng_u32(1, 2, 3), rng_u32(1, 3, 3));
  EXPECT_NE(rng_u32(1, 2, 3), rng_u32(2, 2, 3));
  Rng r(7, 9);
  double sum = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sq += u * u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sq / n - (sum / n) * (sum / n), 1.0 / 12, 0.002);
  Rng g(7, 10);
  double ns = 0, nq = 0;
  for (int i = 0; i < n; ++i) {
    double z = g.normal();
    ns += z;
    nq += z * z;
  }
  EXPECT_NEAR(ns / n, 0.0, 0.01);
  EXPECT_NEAR(nq / n, 1.0, 0.01);
  std::set<uint64_t> seen;
  Rng b(1, 1);
  for (int i = 0; i < 1000; ++i) seen.insert(b.below(10));
  EXPECT_EQ(seen.size(), 10u);
}

TEST(runtime, fp16_conversion_rounds_to_nearest_even_exhaustively) {
  // Every finite fp16 value round-trips; midpoints between neighbours round to the even one.
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    uint16_t b = static_cast<uint16_t>(h);
    if ((b & 0x7c00u) == 0x7c00u) continue;  // inf/nan
    float f = f16_bits_to_f32(b);
    ASSERT_EQ(f32_to_f16_bits(f), b) << "h=" << h;
    uint16_t nb = static_cast<uint16_t>(b + 1);
    if ((nb & 0x7c00u) == 0x7c00u || (b & 0x8000u) != (nb & 0x8000u)) continue;
    float g = f16_bits_to_f32(nb);
    float mid = static_cast<float>((static_cast<double>(f) + g) / 2);
    uint16_t expect = (b & 1u) ? nb : b;
    ASSERT_EQ(f32_to_f16_bits(mid), expect) << "midpoint of h=" << h;
  }
  EXPECT_EQ(f32_to_f16_bits(65520.0f), 0x7c00u);
  EXPECT_EQ(f32_to_f16_bits(65519.0f), 0x7bffu);
  EXPECT_TRUE(std::isnan(f16_bits_to_f32(f32_to_f16_bits(NAN))));
  EXPECT_EQ(f16_bits_to_f32(f32_to_f16_bits(-INFINITY)), -INFINITY);
}

TEST(runtime, bf16_conversion_rounds_to_nearest_even) {
  EXPECT_EQ(f32_to_bf16_bits(1.0f), 0x3f80u);
  EXPECT_EQ(f32_to_bf16_bits(bits_f32(0x3f808000u)), 0x3f80u);  // tie -> even
  EXPECT_EQ(f32_to_bf16_bits(bits_f32(0x3f818000u)), 0x3f82u);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16_bits(bits_f32(0x3f808001u)), 0x3f81u);
  EXPECT_TRUE(std::isnan(bf16_bits_to_f32(f32_to_bf16_bits(NAN))));
  for (uint32_t b = 0; b < 0x10000u; b += 7) {
    uint16_t v = static_cast<uint16_t>(b);
    if ((v & 0x7f80u) == 0x7f80u) continue;
    ASSERT_EQ(f32_to_bf16_bits(bf16_bits_to_f32(v)), v);
  }
}

}  // namespace dex
