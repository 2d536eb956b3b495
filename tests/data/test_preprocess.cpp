// Parity of the inference pre- and post-processing with MONAI's own transforms (shared/fixtures/monai-transforms,
// see its README): network input <= 1e-6, spleen probability <= 1e-5, mask exact except ties, click stages exact.
#include <zlib.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/clicks.h"
#include "data/nifti_io.h"
#include "data/preprocess.h"
#include "tests/testing.h"

namespace dex {
namespace {

const std::string kFix = "fixtures/monai-transforms/";

nlohmann::json load_case(const std::string& name) {
  std::ifstream f(testing::shared_dir(kFix + name + "/case.json"));
  EXPECT_TRUE(f.good()) << "missing fixture " << name;
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str());
}

std::vector<float> load_f32_gz(const std::string& path, size_t n) {
  std::vector<float> v(n);
  gzFile g = gzopen(path.c_str(), "rb");
  if (!g) throw Error("cannot open " + path);
  const int want = static_cast<int>(n * sizeof(float));
  const int got = gzread(g, v.data(), want);
  gzclose(g);
  if (got != want) throw Error("short read " + path);
  return v;
}

Clicks clicks_of(const nlohmann::json& j) {
  Clicks c;
  if (j.contains("spleen"))
    for (auto& p : j["spleen"]) c.spleen.push_back({p[0].get<double>(), p[1].get<double>(), p[2].get<double>()});
  if (j.contains("background"))
    for (auto& p : j["background"]) c.background.push_back({p[0].get<double>(), p[1].get<double>(), p[2].get<double>()});
  return c;
}

// The fixtures' closed-form logits (README): logit0 = 0, logit1 = f(x, y, z) in float64, stored as float32. NCDHW.
std::vector<float> fixture_logits(const std::array<int64_t, 3>& s) {
  const int64_t n = s[0] * s[1] * s[2];
  std::vector<float> l(static_cast<size_t>(2 * n), 0.f);
  const double pi = 3.14159265358979323846;
  for (int64_t x = 0; x < s[0]; ++x)
    for (int64_t y = 0; y < s[1]; ++y)
      for (int64_t z = 0; z < s[2]; ++z)
        l[n + (x * s[1] + y) * s[2] + z] = static_cast<float>(2 * std::sin(2 * pi * x / 37.0) +
                                                              2 * std::cos(2 * pi * y / 23.0) +
                                                              2 * std::sin(2 * pi * z / 29.0 + 1) - 0.5);
  return l;
}

void expect_stage(const nlohmann::json& stage, const char* label, const std::vector<GridPoint>& got) {
  const auto& want = stage.contains(label) ? stage[label] : nlohmann::json::array();
  ASSERT_EQ(want.size(), got.size()) << label;
  for (size_t i = 0; i < got.size(); ++i)
    for (int a = 0; a < 3; ++a) EXPECT_EQ(want[i][a].get<int>(), got[i][a]) << label << " click " << i << " axis " << a;
}

void run_case(const std::string& name) {
  SCOPED_TRACE(name);
  const auto j = load_case(name);
  const std::string dir = testing::shared_dir(kFix + name + "/");
  NiftiMeta meta;
  const Volume img = read_nifti(dir + j["image"].get<std::string>(), &meta);
  PreprocessOptions opt;
  for (int a = 0; a < 3; ++a) opt.spatial_size[a] = j["spatial_size"][a].get<int64_t>();
  const Preprocessed pre = preprocess_image(img, opt);

  // Clicks, stage by stage (flip-only and identity orientations: dex's mapping equals the bundle's).
  const Clicks clicks = clicks_of(j["clicks"]);
  ClickStages ss, bs;
  const GridClicks gc = map_clicks(clicks, pre.record, &ss, &bs);
  const auto& st = j["guidance_by_stage"];
  if (st["after_reorient"].contains("spleen")) {
    for (size_t i = 0; i < ss.after_reorient.size(); ++i)
      for (int a = 0; a < 3; ++a)
        EXPECT_NEAR(st["after_reorient"]["spleen"][i][a].get<double>(), ss.after_reorient[i][a], 1e-9);
  }
  if (st["after_reorient"].contains("background")) {
    for (size_t i = 0; i < bs.after_reorient.size(); ++i)
      for (int a = 0; a < 3; ++a)
        EXPECT_NEAR(st["after_reorient"]["background"][i][a].get<double>(), bs.after_reorient[i][a], 1e-9);
  }
  expect_stage(st["after_AddGuidanceFromPoints"], "spleen", ss.after_add_guidance);
  expect_stage(st["after_AddGuidanceFromPoints"], "background", bs.after_add_guidance);
  expect_stage(st["after_ResizeGuidance"], "spleen", gc.spleen);
  expect_stage(st["after_ResizeGuidance"], "background", gc.background);

  // Network input (3, D, H, W).
  const auto& s = opt.spatial_size;
  const int64_t n = s[0] * s[1] * s[2];
  const std::vector<float> x = assemble_input_cdhw(pre.ct, gc);
  const std::vector<float> ref = load_f32_gz(dir + "net_input.f32.gz", static_cast<size_t>(3 * n));
  for (int c = 0; c < 3; ++c) {
    double worst = 0;
    int64_t wi = -1;
    for (int64_t i = 0; i < n; ++i) {
      const double d = std::fabs(double(x[c * n + i]) - ref[c * n + i]);
      if (d > worst) worst = d, wi = i;
    }
    std::printf("[%s] net input channel %d: max abs diff %.3g\n", name.c_str(), c, worst);
    EXPECT_LE(worst, 1e-6) << "channel " << c << " worst at " << wi << ": " << x[c * n + wi] << " vs " << ref[c * n + wi];
  }
  // The NDHWC assembly holds the same values.
  const std::vector<float> xh = assemble_input_ndhwc(pre.ct, gc);
  for (int64_t i = 0; i < n; i += 97)
    for (int c = 0; c < 3; ++c) ASSERT_EQ(xh[3 * i + c], x[c * n + i]);

  // Post-processing of the closed-form logits, back in the file's grid.
  const std::vector<float> logits = fixture_logits(s);
  const Postprocessed post = postprocess_logits(logits.data(), OutputLayout::NCDHW, pre.record);
  NiftiMeta pm;
  const Volume pref = read_nifti(dir + "prob_spleen.nii.gz", &pm);
  const LabelVolume mref = read_nifti_labels(dir + "mask.nii.gz");
  ASSERT_EQ(pref.shape, img.shape);
  ASSERT_EQ(post.prob_spleen.shape, img.shape);
  EXPECT_EQ(post.prob_spleen.affine, img.affine);
  const auto cmp = testing::compare(post.prob_spleen.data.data(), pref.data.data(), pref.size(), 0.0, 1e-5, 1e-10);
  EXPECT_TRUE(cmp.ok) << cmp.message << " max_abs " << cmp.max_abs;
  std::printf("[%s] spleen probability: max abs diff %.3g\n", name.c_str(), cmp.max_abs);
  int64_t mismatches = 0, ties = 0, fg = 0;
  for (int64_t i = 0; i < pref.size(); ++i) {
    fg += post.mask.data[i];
    if (post.mask.data[i] == mref.data[i]) continue;
    if (std::fabs(2.0 * pref.data[i] - 1.0) <= 2e-6) ++ties;
    else ++mismatches;
  }
  std::printf("[%s] mask: %lld voxels differ outside ties, %lld tie voxels differ\n", name.c_str(),
              static_cast<long long>(mismatches), static_cast<long long>(ties));
  EXPECT_EQ(mismatches, 0) << "mask differs outside ties (" << ties << " tie voxels differ)";
  EXPECT_EQ(std::abs(fg - j["mask_foreground_voxels"].get<int64_t>()), ties);
}

TEST(Preprocess, MonaiParityFlipClick64) { run_case("flip_click_64"); }
TEST(Preprocess, MonaiParityFlipAuto96x80x48) { run_case("flip_auto_96x80x48"); }
TEST(Preprocess, MonaiParityPermAuto64) { run_case("perm_auto_64"); }
TEST(Preprocess, MonaiParityRealClick128) { run_case("real_a_click_128"); }

// perm_zxy.nii.gz is flip.nii.gz's world image stored with axes (z, x, y). A click on the same world point must land
// on the same grid voxel in both files with dex's mapping; the bundle's mapping (bundle_compat) differs there only
// through its per-axis factors computed against the pre-orientation shape (spec §13.2).
TEST(Preprocess, PermutedScanClicksLandOnTheSameVoxel) {
  const auto j = load_case("flip_click_64");
  const std::string dir = testing::shared_dir(kFix + "images/");
  const Volume flip = read_nifti(dir + "flip.nii.gz");
  const Volume perm = read_nifti(dir + "perm_zxy.nii.gz");
  PreprocessOptions opt;
  opt.spatial_size = {64, 64, 64};
  const Preprocessed pf = preprocess_image(flip, opt);
  const Preprocessed pp = preprocess_image(perm, opt);
  ASSERT_TRUE(pp.record.geometry.orientation.permutes());
  ASSERT_EQ(pf.ct.data, pp.ct.data);  // same world image -> same network CT channel

  const Clicks cf = clicks_of(j["clicks"]);
  Clicks cp;
  const Mat4 to_perm = mat4_mul(mat4_inverse(perm.affine), flip.affine);
  auto conv = [&](const std::vector<Click>& in) {
    std::vector<Click> out;
    for (const auto& p : in) {
      auto q = mat4_apply(to_perm, p);
      for (auto& v : q) v = std::round(v);
      out.push_back(q);
    }
    return out;
  };
  cp.spleen = conv(cf.spleen);
  cp.background = conv(cf.background);
  const GridClicks gf = map_clicks(cf, pf.record);
  const GridClicks gp = map_clicks(cp, pp.record);
  EXPECT_EQ(gf.spleen, gp.spleen);
  EXPECT_EQ(gf.background, gp.background);
  expect_stage(j["guidance_by_stage"]["after_ResizeGuidance"], "spleen", gp.spleen);

  // The bundle's mapping on the permuted file: its stage-3 factors are spatial_size / file shape per array index,
  // i.e. the oriented index on axis a is scaled by 64 / file_shape[a] instead of 64 / oriented_shape[a].
  PreprocessRecord compat = pp.record;
  compat.options.bundle_compat = true;
  ClickStages st;
  const GridClicks gb = map_clicks(cp, compat, &st);
  EXPECT_NE(gb.spleen, gp.spleen);
  const auto& g = pp.record.geometry;
  for (size_t i = 0; i < cp.spleen.size(); ++i)
    for (int a = 0; a < 3; ++a) {
      const int t = static_cast<int>(std::trunc(st.after_reorient[i][a]));
      const int f1 = static_cast<int>(std::trunc(t * (double(g.oriented_shape[a]) / double(g.file_shape[a]))));
      EXPECT_EQ(gb.spleen[i][a], static_cast<int>(std::trunc(f1 * (64.0 / double(g.file_shape[a])))));
      EXPECT_EQ(gp.spleen[i][a], static_cast<int>(std::trunc(t * (64.0 / double(g.oriented_shape[a])))));
    }
}

TEST(Preprocess, ClickOutsideTheImageIsAnInputErrorNamingIt) {
  Volume v;
  v.shape = {10, 12, 14};
  v.data.assign(10 * 12 * 14, 0.f);
  const Preprocessed p = preprocess_image(v, PreprocessOptions{{8, 8, 8}});
  Clicks c;
  c.background = {{1, 2, 3}, {9, 12, 0}};
  try {
    map_clicks(c, p.record);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("background click #2 [9, 12, 0]"), std::string::npos) << e.what();
  }
  c.background = {{-1, 2, 3}};
  EXPECT_THROW(map_clicks(c, p.record), InputError);
}

}  // namespace
}  // namespace dex
