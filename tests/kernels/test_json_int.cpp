// json_int_in: the one range check for JSON integers before any narrowing (configs, model-file metadata).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "kernels/json_int.h"

namespace dex {
namespace {

TEST(JsonInt, RangeChecksSignedUnsignedAndRejectsEverythingElse) {
  using nlohmann::json;
  EXPECT_TRUE(json_int_in(json(8), 1, 1024));
  EXPECT_TRUE(json_int_in(json(1), 1, 1));
  EXPECT_FALSE(json_int_in(json(0), 1, 1024));
  EXPECT_FALSE(json_int_in(json(1025), 1, 1024));
  EXPECT_TRUE(json_int_in(json(-5), -10, 10));
  EXPECT_FALSE(json_int_in(json(int64_t(4294967304)), 1, 1024));  // 2^32 + 8: get<int> would give 8
  EXPECT_FALSE(json_int_in(json::parse("18446744073709551615"), 0, std::numeric_limits<int64_t>::max()));
  EXPECT_TRUE(json_int_in(json::parse("9223372036854775807"), 0, std::numeric_limits<int64_t>::max()));
  EXPECT_TRUE(json_int_in(json(uint64_t(7)), 1, 10));
  EXPECT_FALSE(json_int_in(json(uint64_t(0)), 1, 10));
  EXPECT_FALSE(json_int_in(json(uint64_t(7)), -10, -1));
  EXPECT_FALSE(json_int_in(json(8.0), 1, 1024));
  EXPECT_FALSE(json_int_in(json("8"), 1, 1024));
  EXPECT_FALSE(json_int_in(json(true), 0, 1));
  EXPECT_FALSE(json_int_in(json(nullptr), 0, 1));
}

}  // namespace
}  // namespace dex
