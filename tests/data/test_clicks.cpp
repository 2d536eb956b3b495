// Click files (parsing, errors naming the click) and the mapping to the network grid, checked against the spec's
// oracle examples (§6 and §13.2).
#include <cstdio>
#include <fstream>

#include "data/clicks.h"
#include "data/orientation.h"
#include "tests/testing.h"

namespace dex {
namespace {

void expect_error(const std::string& json, const std::string& fragment) {
  try {
    parse_clicks(json, "c.json");
    FAIL() << "no error for " << json;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("c.json"), std::string::npos) << e.what();
  }
}

TEST(Clicks, ParsesTheBundleFormat) {
  const Clicks c = parse_clicks(R"({"image": "ct.nii.gz", "background": [], "spleen": [[1, 2, 3], [4.5, 5, 6]]})");
  EXPECT_EQ(c.image, "ct.nii.gz");
  ASSERT_EQ(c.spleen.size(), 2u);
  EXPECT_EQ(c.spleen[1][0], 4.5);
  EXPECT_TRUE(c.background.empty());
  EXPECT_TRUE(parse_clicks("{}").empty());
}

TEST(Clicks, BadFilesNameTheProblem) {
  expect_error(R"({"liver": [[1,2,3]]})", "unknown label \"liver\"");
  expect_error(R"({"spleen": [[1,2]]})", "spleen click #1 [1,2]");
  expect_error(R"({"spleen": [[1,2,3],[1,2,3,4]]})", "spleen click #2");
  expect_error(R"({"background": [[1,"x",3]]})", "non-numeric");
  expect_error(R"({"spleen": {"a": 1}})", "must be a list");
  expect_error(R"([1,2,3])", "JSON object");
  expect_error(R"({"spleen": [[1,2,3]])", "not valid JSON");
  EXPECT_THROW(read_clicks("/nonexistent/clicks.json"), InputError);
  const std::string p = ::testing::TempDir() + "dex_clicks_test.json";
  std::ofstream(p) << R"({"spleen": [[7, 8, 9]]})";
  EXPECT_EQ(read_clicks(p).spleen[0][2], 9.0);
  std::remove(p.c_str());
}

TEST(Clicks, OutsideTheImageIsAnError) {
  Clicks c;
  c.spleen = {{0, 0, 0}, {9.5, 11, 13}};
  EXPECT_NO_THROW(validate_clicks(c, {10, 12, 14}));
  c.spleen.push_back({3, 12, 1});
  try {
    validate_clicks(c, {10, 12, 14}, "my.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("spleen click #3 [3, 12, 1] is outside"), std::string::npos) << e.what();
  }
  c.spleen = {{-0.5, 1, 1}};
  EXPECT_THROW(validate_clicks(c, {10, 12, 14}), InputError);
}

GridGeometry geometry(const Mat4& affine, std::array<int64_t, 3> shape) {
  GridGeometry g;
  g.file_shape = shape;
  g.file_affine = affine;
  g.orientation = ras_orientation(affine);
  g.oriented_shape = g.orientation.out_shape(shape);
  g.oriented_affine = mat4_mul(affine, g.orientation.out_to_in(shape));
  return g;
}

// Spec §6 [oracle]: 200x180x60, affine diag(-0.8, -0.8, 2.5): click (140,110,28) -> (59,69,28) -> (37,49,59).
TEST(Clicks, SpecExampleFlipOnly) {
  Mat4 a = mat4_identity();
  a[0][0] = -0.8;
  a[1][1] = -0.8;
  a[2][2] = 2.5;
  const GridGeometry g = geometry(a, {200, 180, 60});
  for (bool compat : {false, true}) {
    ClickStages st;
    const auto p = map_clicks_to_grid({{140, 110, 28}}, g, compat, &st);
    EXPECT_NEAR(st.after_reorient[0][0], 59, 1e-9);
    EXPECT_NEAR(st.after_reorient[0][1], 69, 1e-9);
    EXPECT_EQ(st.after_add_guidance[0], (GridPoint{59, 69, 28}));
    EXPECT_EQ(p[0], (GridPoint{37, 49, 59})) << "bundle_compat " << compat;
  }
}

// Spec §13.2 [oracle]: the axis-swapped copy (stored 180x200x60, array axis 0 = A, 1 = R) with the click at
// (59,69,28) in RAS: the bundle lands at (46,39,59), dex at (37,49,59) like the unswapped file.
TEST(Clicks, SpecExampleAxisSwapBundleQuirkAndDexFix) {
  Mat4 a{};
  a[1][0] = 0.8;
  a[0][1] = 0.8;
  a[2][2] = 2.5;
  a[3][3] = 1;
  const GridGeometry g = geometry(a, {180, 200, 60});
  ASSERT_EQ(g.oriented_shape, (std::array<int64_t, 3>{200, 180, 60}));
  ClickStages st;
  EXPECT_EQ(map_clicks_to_grid({{69, 59, 28}}, g, true, &st)[0], (GridPoint{46, 39, 59}));
  EXPECT_EQ(st.after_add_guidance[0], (GridPoint{65, 62, 28}));
  EXPECT_EQ(map_clicks_to_grid({{69, 59, 28}}, g, false)[0], (GridPoint{37, 49, 59}));
}

TEST(Clicks, FloatClicksTruncateAfterReorientation) {
  // Identity orientation: 10.9 -> 10 -> x 128/20 = 64.
  const GridGeometry g = geometry(mat4_identity(), {20, 20, 20});
  EXPECT_EQ(map_clicks_to_grid({{10.9, 0.2, 19.99}}, g)[0], (GridPoint{64, 0, 121}));
}

}  // namespace
}  // namespace dex
