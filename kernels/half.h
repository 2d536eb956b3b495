// fp32 <-> fp16 / bf16 scalar conversion, round-to-nearest-even, host and device, bit-exact with
// IEEE 754 binary16 and with PyTorch's bfloat16 rounding. Storage types are plain uint16_t bit patterns
// so the CPU code needs no CUDA headers.
#pragma once
#include <cstdint>
#include <cstring>
#include "kernels/common.h"

namespace dex {

struct f16 { uint16_t bits; };
struct bf16 { uint16_t bits; };

DEX_HD inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
DEX_HD inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

DEX_HD inline uint16_t f32_to_f16_bits(float f) {
  uint32_t x = f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u | ((absx >> 13) & 0x3ffu) : 0u));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520 -> inf
  if (absx < 0x38800000u) {                                               // subnormal or zero in fp16
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);           // < 2^-25 rounds to 0
    uint32_t exp = absx >> 23;
    uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp;  // 14 - (exp-127) + 13 ... result = mant >> (shift)
    uint32_t val = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (val & 1u))) ++val;
    return static_cast<uint16_t>(sign | val);
  }
  uint32_t val = ((absx >> 13) - (112u << 10));
  uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (val & 1u))) ++val;
  return static_cast<uint16_t>(sign | val);
}

DEX_HD inline float f16_bits_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t out;
  if (exp == 0) {
    if (mant == 0) {
      out = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { ++e; mant <<= 1; } while ((mant & 0x400u) == 0);
      out = sign | ((127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    out = sign | 0x7f800000u | (mant << 13);
  } else {
    out = sign | ((exp + 112) << 23) | (mant << 13);
  }
  return bits_f32(out);
}

DEX_HD inline uint16_t f32_to_bf16_bits(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
  uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;
  return static_cast<uint16_t>(x >> 16);
}
DEX_HD inline float bf16_bits_to_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

// Round-trip helpers: what an fp32 value becomes after storage in fp16/bf16.
DEX_HD inline float round_f16(float f) { return f16_bits_to_f32(f32_to_f16_bits(f)); }
DEX_HD inline float round_bf16(float f) { return bf16_bits_to_f32(f32_to_bf16_bits(f)); }

}  // namespace dex
