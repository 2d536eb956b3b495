// 2D 8-connected components vs skimage.measure.label (fixtures: scripts/gen_fixtures_clicksim.py).
#include <gtest/gtest.h>

#include "data/connected_components.h"
#include "tests/testing.h"

namespace dex {

TEST(ConnectedComponents, MatchesSkimage) {
  auto fx = testing::load_fixture(testing::test_data("clicksim/cc.bin"));
  for (const char* name : {"random", "blobs", "diagonal", "checker", "full", "empty", "u_shape"}) {
    const auto& m = fx.at(std::string(name) + "/mask");
    const auto& ref = fx.at(std::string(name) + "/labels");
    std::vector<uint8_t> mask(m.data.begin(), m.data.end());
    std::vector<int32_t> labels;
    int32_t n = connected_components_2d(mask.data(), m.shape[0], m.shape[1], labels);
    double ref_max = 0;
    for (double v : ref.data) ref_max = std::max(ref_max, v);
    EXPECT_EQ(n, static_cast<int32_t>(ref_max)) << name;
    int64_t mismatches = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) mismatches += labels[i] != static_cast<int32_t>(ref.data[i]);
    EXPECT_EQ(mismatches, 0) << name;
  }
}

TEST(ConnectedComponents, RasterOrderAndDiagonals) {
  // Two components; the one whose first pixel comes first in raster order is 1, even though it is further right.
  // Diagonal contact connects (8-neighbourhood).
  const std::vector<uint8_t> m{0, 0, 0, 1,   //
                               1, 0, 1, 0,   //
                               1, 0, 0, 0};  //
  std::vector<int32_t> labels;
  EXPECT_EQ(connected_components_2d(m.data(), 3, 4, labels), 2);
  EXPECT_EQ(labels, (std::vector<int32_t>{0, 0, 0, 1, 2, 0, 1, 0, 2, 0, 0, 0}));
}

}  // namespace dex
