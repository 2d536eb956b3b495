// One check for integers read from JSON (configs, model-file metadata): nlohmann's get<int> truncates 2^32 + 8 to 8
// and get<int64_t> wraps a uint64 above 2^63, so range checks go through this before any narrowing.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>

namespace dex {

// True when v is a JSON integer (signed or unsigned) in [lo, hi]; floats, strings and the rest are false.
inline bool json_int_in(const nlohmann::json& v, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) return false;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return (lo <= 0 || u >= static_cast<uint64_t>(lo)) && hi >= 0 && u <= static_cast<uint64_t>(hi);
  }
  const int64_t s = v.get<int64_t>();
  return s >= lo && s <= hi;
}

}  // namespace dex
