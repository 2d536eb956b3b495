// argmax over channels: exact parity with torch.argmax (ties -> lowest index), NaN handling, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/elementwise.h"
#include "tests/testing.h"

namespace dex {
namespace {

TEST(argmax, matches_pytorch_exactly_including_ties) {
  auto fx = testing::load_fixture(testing::test_data("ops/argmax.bin"));
  for (const std::string k : {"ties", "real"}) {
    std::vector<float> x = fx.at(k + ".x").f32();
    const int C = static_cast<int>(fx.at(k + ".x").shape.back());
    const int64_t voxels = static_cast<int64_t>(x.size()) / C;
    std::vector<uint8_t> out(voxels);
    argmax_cpu(voxels, C, x.data(), out.data());
    int64_t mismatches = 0;
    for (int64_t v = 0; v < voxels; ++v) mismatches += out[v] != fx.at(k + ".idx").data[v];
    EXPECT_EQ(mismatches, 0) << k;
    std::cout << "[ parity   ] argmax " << k << ": " << mismatches << " of " << voxels << " voxels differ\n";
  }
}

TEST(argmax, ties_take_the_lowest_index_and_nan_wins) {
  const float nan = std::nanf("");
  std::vector<float> x = {2, 5, 5,   7, 7, 7,   -1, -1, 0,   1, nan, 3,   nan, nan, 9};
  std::vector<uint8_t> out(5);
  argmax_cpu(5, 3, x.data(), out.data());
  EXPECT_EQ(out, (std::vector<uint8_t>{1, 0, 2, 1, 0}));
}

TEST(argmax, supports_256_channels_and_rejects_more) {
  std::vector<float> x(256, 0.f);
  x[255] = 1.f;
  uint8_t out = 0;
  argmax_cpu(1, 256, x.data(), &out);
  EXPECT_EQ(out, 255);
  std::vector<float> big(257);
  EXPECT_THROW(argmax_cpu(1, 257, big.data(), &out), Error);
  EXPECT_THROW(argmax_cpu(1, 0, big.data(), &out), Error);
  EXPECT_THROW(argmax_cpu(1, 2, big.data(), nullptr), Error);
}

}  // namespace
}  // namespace dex
