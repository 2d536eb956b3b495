// Click simulation (spec §8): the deterministic parts exactly (valid slices, components and distances of the seeds,
// discrepancy maps, the full-slice quirk), the sampling by its invariants and its distribution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "data/click_simulation.h"
#include "data/distance_transform.h"
#include "data/phantom.h"
#include "data/resize.h"
#include "kernels/rng.h"
#include "tests/testing.h"

namespace dex {
namespace {

LabelVolume seeds_label(const std::map<std::string, testing::FixtureTensor>& fx) {
  const auto& t = fx.at("label");
  LabelVolume v;
  v.shape = {t.shape[0], t.shape[1], t.shape[2]};
  v.data.assign(t.data.begin(), t.data.end());
  return v;
}

LabelVolume cube_label(std::array<int64_t, 3> shape, std::array<int64_t, 3> lo, std::array<int64_t, 3> hi) {
  LabelVolume v;
  v.shape = shape;
  v.data.assign(static_cast<size_t>(v.size()), 0);
  for (int64_t i = lo[0]; i < hi[0]; ++i)
    for (int64_t j = lo[1]; j < hi[1]; ++j)
      for (int64_t k = lo[2]; k < hi[2]; ++k) v.at(i, j, k) = 1;
  return v;
}

}  // namespace

TEST(ClickSimulation, ValidSlicesMatchMonai) {
  auto fx = testing::load_fixture(testing::test_data("clicksim/seeds.bin"));
  const auto label = seeds_label(fx);
  const auto names = bundle_label_names();
  const auto valid = find_valid_slices(label, names);
  ASSERT_EQ(valid.size(), 2u);
  for (size_t l = 0; l < 2; ++l) {
    const auto& ref = fx.at("valid/" + names[l].name);
    ASSERT_EQ(static_cast<int64_t>(valid[l].size()), ref.numel()) << names[l].name;
    for (int64_t i = 0; i < ref.numel(); ++i) EXPECT_EQ(valid[l][i], static_cast<int64_t>(ref.data[i]));
  }
  // No spleen anywhere: ten -1 entries, and the seed is one [-1,-1,-1,-1] (numpy picks the last slice, which is empty).
  LabelVolume empty = label;
  std::fill(empty.data.begin(), empty.data.end(), 0);
  const auto v2 = find_valid_slices(empty, names);
  EXPECT_EQ(v2[0], std::vector<int64_t>(10, -1));
  Rng rng(7, rng_stream(RngStream::Test, 1));
  const auto g = add_initial_seed_points(empty, names, v2, rng);
  ASSERT_EQ(g[0].size(), 1u);
  EXPECT_EQ(g[0][0], (SimClick{-1, -1, -1, -1}));
}

// Every seed click: on a valid slice, inside component r of that slice (skimage numbering), with entry 0 equal to
// scipy's 2D chessboard distance there; missing components -> [-1,-1,-1,-1]; a full slice -> [-1, h, w, z].
TEST(ClickSimulation, InitialSeedsMatchMonaiDeterministicParts) {
  auto fx = testing::load_fixture(testing::test_data("clicksim/seeds.bin"));
  const auto label = seeds_label(fx);
  const auto names = bundle_label_names();
  const int64_t H = label.shape[0], W = label.shape[1];
  const auto valid = find_valid_slices(label, names);
  std::set<int64_t> slices_seen[2];
  int quirk_clicks = 0;
  for (uint64_t seed = 0; seed < 60; ++seed) {
    Rng rng(seed, rng_stream(RngStream::Test, 2));
    const auto g = add_initial_seed_points(label, names, valid, rng);
    ASSERT_EQ(g.size(), 2u);
    for (size_t l = 0; l < 2; ++l) {
      ASSERT_EQ(g[l].size(), 5u) << "seed " << seed << " label " << names[l].name;
      const int64_t z = g[l][0][3] >= 0 ? g[l][0][3] : -1;
      int64_t slice = -1;
      for (int r = 1; r <= 5; ++r) {
        const auto& c = g[l][r - 1];
        if (c[1] < 0) {  // missing component: the whole point is -1
          EXPECT_EQ(c, (SimClick{-1, -1, -1, -1}));
          continue;
        }
        if (slice < 0) slice = c[3];
        EXPECT_EQ(c[3], slice) << "all components come from one slice";
        const std::string key = "z" + std::to_string(c[3]) + "/" + names[l].name;
        const auto& comps = fx.at(key + "/components");
        ASSERT_EQ(static_cast<int>(comps.data[c[1] * W + c[2]]), r) << key << " point " << c[1] << "," << c[2];
        const auto& dist = fx.at(key + "/dist" + std::to_string(r));
        EXPECT_EQ(c[0], static_cast<int64_t>(dist.data[c[1] * W + c[2]])) << key;
        if (c[0] == -1) ++quirk_clicks;
      }
      // A component r is missing exactly when the slice has fewer than r components.
      if (slice >= 0) {
        const auto& comps = fx.at("z" + std::to_string(slice) + "/" + names[l].name + "/components");
        double ncomp = 0;
        for (double v : comps.data) ncomp = std::max(ncomp, v);
        for (int r = 1; r <= 5; ++r) EXPECT_EQ(g[l][r - 1][1] >= 0, r <= ncomp) << "slice " << slice << " r " << r;
        slices_seen[l].insert(slice);
      }
      (void)z;
    }
  }
  // Slices are drawn from the valid ones only, and all of them come up in 60 draws.
  for (size_t l = 0; l < 2; ++l) {
    const auto& ref = fx.at("valid/" + names[l].name);
    EXPECT_EQ(slices_seen[l].size(), static_cast<size_t>(ref.numel())) << names[l].name;
  }
  // Slices 0, 5, 6 hold no spleen: the background fills them, distance -1 everywhere (the quirk).
  EXPECT_GT(quirk_clicks, 0);
  (void)H;
}

TEST(ClickSimulation, FullSliceQuirkAndHeatmapSkip) {
  LabelVolume label = cube_label({12, 10, 3}, {0, 0, 1}, {4, 4, 2});  // spleen only on slice 1
  const auto names = bundle_label_names();
  std::vector<std::vector<int64_t>> valid{{1}, {0}};  // background on slice 0: the whole slice
  Rng rng(3, rng_stream(RngStream::Test, 3));
  const auto g = add_initial_seed_points(label, names, valid, rng);
  ASSERT_EQ(g[1].size(), 5u);
  EXPECT_EQ(g[1][0][0], -1);
  EXPECT_GE(g[1][0][1], 0);
  EXPECT_LT(g[1][0][1], 12);
  EXPECT_GE(g[1][0][2], 0);
  EXPECT_LT(g[1][0][2], 10);
  EXPECT_EQ(g[1][0][3], 0);
  for (int r = 1; r < 5; ++r) EXPECT_EQ(g[1][r], (SimClick{-1, -1, -1, -1}));
  // The quirk click is dropped by the heatmap step (any negative entry), the spleen click is kept.
  EXPECT_TRUE(guidance_points(g[1]).empty());
  const auto sp = guidance_points(g[0]);
  ASSERT_EQ(sp.size(), 1u);
  EXPECT_EQ(sp[0][2], 1);
  // The uniform draw over a full slice reaches many pixels.
  std::set<std::pair<int64_t, int64_t>> seen;
  for (uint64_t s = 0; s < 200; ++s) {
    Rng r2(s, rng_stream(RngStream::Test, 4));
    const auto g2 = add_initial_seed_points(label, names, valid, r2);
    seen.insert({g2[1][0][1], g2[1][0][2]});
  }
  EXPECT_GT(seen.size(), 60u);
}

TEST(ClickSimulation, Reproducible) {
  auto fx = testing::load_fixture(testing::test_data("clicksim/seeds.bin"));
  const auto label = seeds_label(fx);
  const auto names = bundle_label_names();
  Rng a = click_rng(42, 3, 17), b = click_rng(42, 3, 17), c = click_rng(42, 4, 17);
  const auto ga = initial_guidance(label, names, a), gb = initial_guidance(label, names, b);
  EXPECT_EQ(ga, gb);
  bool differs = false;
  for (int t = 0; t < 5 && !differs; ++t) differs = initial_guidance(label, names, c) != ga;
  EXPECT_TRUE(differs) << "another epoch draws other clicks";
}

TEST(ClickSimulation, DiscrepancyRegionsExact) {
  LabelVolume label, pred;
  label.shape = pred.shape = {1, 2, 3};
  label.data = {1, 1, 0, 0, 0, 1};
  pred.data = {1, 0, 1, 0, 1, 1};
  const auto d = find_discrepancy_regions(label, pred, bundle_label_names());
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].pos, (std::vector<uint8_t>{0, 1, 0, 0, 0, 0}));  // spleen missed
  EXPECT_EQ(d[0].neg, (std::vector<uint8_t>{0, 0, 1, 0, 1, 0}));  // spleen extra
  EXPECT_EQ(d[1].pos, (std::vector<uint8_t>{0, 0, 1, 0, 1, 0}));  // background missed
  EXPECT_EQ(d[1].neg, (std::vector<uint8_t>{0, 1, 0, 0, 0, 0}));  // background extra
}

TEST(ClickSimulation, SampleClickIndexOrder) {
  // A single-voxel region: the click is exactly that voxel, [1, i, j, k] (distance 1 to the outside).
  std::array<int64_t, 3> shape{5, 6, 7};
  std::vector<uint8_t> region(5 * 6 * 7, 0);
  region[(3 * 6 + 4) * 7 + 2] = 1;
  Rng rng(1, rng_stream(RngStream::Test, 5));
  SimClick c;
  ASSERT_TRUE(sample_click(region.data(), shape, rng, &c));
  EXPECT_EQ(c, (SimClick{1, 3, 4, 2}));
  std::fill(region.begin(), region.end(), 0);
  EXPECT_FALSE(sample_click(region.data(), shape, rng, &c));
}

// sample_click works on the region's bounding box (+1 voxel, clipped to the grid): on random blobs, many touching
// the grid's faces, the click is a region voxel and its distance is the whole grid's distance transform there; a
// region filling the whole grid gives d = -1 (no zero anywhere), and the crop keeps the grid's border "not outside".
TEST(ClickSimulation, SampleClickOnTheCropMatchesTheWholeGridTransform) {
  const std::array<int64_t, 3> shape{11, 9, 13};
  const int64_t n = shape[0] * shape[1] * shape[2];
  int touching = 0;
  for (uint64_t t = 0; t < 60; ++t) {
    std::vector<uint8_t> region(static_cast<size_t>(n), 0);
    // A union of two random boxes, sometimes reaching the faces.
    for (int b = 0; b < 2; ++b) {
      int64_t a0[3], a1[3];
      for (int a = 0; a < 3; ++a) {
        a0[a] = static_cast<int64_t>(rng_u32(17, t * 16 + b * 6 + a, 0) % uint32_t(shape[a]));
        a1[a] = std::min(shape[a] - 1, a0[a] + static_cast<int64_t>(rng_u32(17, t * 16 + b * 6 + a + 3, 0) % 6));
      }
      for (int64_t i = a0[0]; i <= a1[0]; ++i)
        for (int64_t j = a0[1]; j <= a1[1]; ++j)
          for (int64_t k = a0[2]; k <= a1[2]; ++k) region[static_cast<size_t>((i * shape[1] + j) * shape[2] + k)] = 1;
      touching += a0[0] == 0 || a1[0] == shape[0] - 1 || a0[2] == 0 || a1[2] == shape[2] - 1;
    }
    const std::vector<int32_t> full = distance_transform_cdt_3d(region.data(), shape);
    Rng rng(t, rng_stream(RngStream::Test, 7));
    for (int draw = 0; draw < 5; ++draw) {
      SimClick c;
      ASSERT_TRUE(sample_click(region.data(), shape, rng, &c));
      const int64_t v = (c[1] * shape[1] + c[2]) * shape[2] + c[3];
      ASSERT_TRUE(region[static_cast<size_t>(v)]) << "case " << t << ": click outside the region";
      EXPECT_EQ(c[0], full[static_cast<size_t>(v)]) << "case " << t << " at " << c[1] << "," << c[2] << "," << c[3];
    }
  }
  EXPECT_GT(touching, 10) << "too few regions touch the grid's faces to test the border";
  std::vector<uint8_t> all(static_cast<size_t>(n), 1);
  Rng rng(9, rng_stream(RngStream::Test, 8));
  SimClick c;
  ASSERT_TRUE(sample_click(all.data(), shape, rng, &c));
  EXPECT_EQ(c[0], -1);
}

// The empirical distribution of sample_click over a 7^3 cube (distances 1..4) matches weights exp(d) - 1: chi-square
// over the four distance classes (3 degrees of freedom) below 27.9 (p = 1e-5), and always inside the region.
TEST(ClickSimulation, SamplingFollowsExpDistanceWeights) {
  const int64_t n = 9;
  std::vector<uint8_t> region(n * n * n, 0);
  for (int64_t i = 1; i < 8; ++i)
    for (int64_t j = 1; j < 8; ++j)
      for (int64_t k = 1; k < 8; ++k) region[(i * n + j) * n + k] = 1;
  // Voxels per distance class: shells of the 7^3 cube: 7^3-5^3, 5^3-3^3, 3^3-1, 1.
  const double count[5] = {0, 218, 98, 26, 1};
  double z = 0;
  for (int d = 1; d <= 4; ++d) z += count[d] * (std::exp(d) - 1);
  const int draws = 20000;
  Rng rng(2026, rng_stream(RngStream::Test, 6));
  std::vector<int> hist(5, 0);
  for (int t = 0; t < draws; ++t) {
    SimClick c;
    ASSERT_TRUE(sample_click(region.data(), {n, n, n}, rng, &c));
    ASSERT_TRUE(region[(c[1] * n + c[2]) * n + c[3]]) << "click outside the region";
    const int64_t d = 1 + std::min({c[1] - 1, c[2] - 1, c[3] - 1, 7 - c[1], 7 - c[2], 7 - c[3]});
    ASSERT_EQ(c[0], d);
    hist[d]++;
  }
  double chi2 = 0;
  for (int d = 1; d <= 4; ++d) {
    const double e = draws * count[d] * (std::exp(d) - 1) / z;
    chi2 += (hist[d] - e) * (hist[d] - e) / e;
  }
  std::cout << "[ stats    ] chi2 = " << chi2 << " (counts " << hist[1] << " " << hist[2] << " " << hist[3] << " "
            << hist[4] << ")\n";
  EXPECT_LT(chi2, 27.9);
}

// Missed spleen + false-positive spleen: spleen clicks land in the missed part, background clicks in the false
// positive, stale -1 clicks are dropped, and the pruning keeps or empties whole lists.
TEST(ClickSimulation, RandomGuidanceFromDiscrepancy) {
  const auto names = bundle_label_names();
  const auto label = cube_label({20, 20, 12}, {4, 4, 2}, {12, 12, 10});
  const auto pred = cube_label({20, 20, 12}, {8, 4, 2}, {16, 12, 10});  // shifted by 4 along axis 0
  const auto disc = find_discrepancy_regions(label, pred, names);
  Guidance start{{{-1, -1, -1, -1}, {2, 5, 5, 5}}, {{-1, 3, 3, 0}}};
  int both = 0, only_spleen = 0, only_bg = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    Rng rng(seed, rng_stream(RngStream::Test, 7));
    const auto g = add_random_guidance(start, disc, label, names, rng);
    // Unpruned: spleen = [kept 1] + pos click + click from background's negative (miss area 256 > 50) = 3,
    // background = pos click + click from spleen's negative (false positive 256 > 50) = 2.
    EXPECT_TRUE(g[0].size() == 3 || g[0].empty()) << g[0].size();
    EXPECT_TRUE(g[1].size() == 2 || g[1].empty()) << g[1].size();
    EXPECT_FALSE(g[0].empty() && g[1].empty());
    both += !g[0].empty() && !g[1].empty();
    only_spleen += !g[0].empty() && g[1].empty();
    only_bg += g[0].empty() && !g[1].empty();
    if (!g[0].empty()) {
      EXPECT_EQ(g[0][0], (SimClick{2, 5, 5, 5}));
      for (size_t i = 1; i < g[0].size(); ++i) {
        const auto& c = g[0][i];
        EXPECT_TRUE(c[1] >= 4 && c[1] < 8 && c[2] >= 4 && c[2] < 12 && c[3] >= 2 && c[3] < 10) << "missed spleen";
        EXPECT_GE(c[0], 1);
      }
    }
    for (const auto& c : g[1])
      EXPECT_TRUE(c[1] >= 12 && c[1] < 16 && c[2] >= 4 && c[2] < 12 && c[3] >= 2 && c[3] < 10) << "false positive";
  }
  EXPECT_GT(both, 0);
  EXPECT_GT(only_spleen, 0);
  EXPECT_GT(only_bg, 0);
}

TEST(ClickSimulation, PruningKeepsWholeLists) {
  const Guidance g0{{{1, 1, 1, 1}, {2, 2, 2, 2}, {3, 3, 3, 3}}, {{4, 4, 4, 4}, {5, 5, 5, 5}}, {}};
  std::map<std::vector<bool>, int> outcomes;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Guidance g = g0;
    Rng rng(seed, rng_stream(RngStream::Test, 8));
    prune_guidance(g, rng);
    std::vector<bool> kept;
    for (size_t l = 0; l < 3; ++l) {
      EXPECT_TRUE(g[l] == g0[l] || g[l].empty());
      kept.push_back(g[l] == g0[l] && !g0[l].empty());
    }
    EXPECT_TRUE(kept[0] || kept[1]) << "at least one non-empty list survives";
    outcomes[kept]++;
  }
  // n = randint(1,10) often exceeds 3: both lists kept; n <= 2 with the 2-list first: only that one.
  const std::vector<bool> both{true, true, false}, first{true, false, false}, second{false, true, false};
  EXPECT_GT(outcomes[both], 0);
  EXPECT_GT(outcomes[first], 0);
  EXPECT_GT(outcomes[second], 0);
}

TEST(ClickSimulation, HeatmapsFromGuidance) {
  const Guidance g{{{3, 2, 3, 4}, {-1, 5, 5, 5}}, {{-1, -1, -1, -1}}};
  const auto maps = guidance_heatmaps(g, {8, 9, 10});
  ASSERT_EQ(maps.size(), 2u);
  ASSERT_EQ(maps[0].size(), 8u * 9 * 10);
  // One valid point: the peak (1 after min-max) sits on it; the [-1,5,5,5] quirk point is skipped.
  const auto peak = std::max_element(maps[0].begin(), maps[0].end()) - maps[0].begin();
  EXPECT_EQ(peak, (2 * 9 + 3) * 10 + 4);
  EXPECT_FLOAT_EQ(maps[0][peak], 1.f);
  EXPECT_LT(maps[0][(5 * 9 + 5) * 10 + 5], maps[0][(2 * 9 + 3) * 10 + 5]);
  for (float v : maps[1]) ASSERT_EQ(v, 0.f);
}

// On a phantom label resized to a small network grid (nearest, as the bundle's label path): every kept seed lies in
// its label, one round of clicks against an empty prediction lands inside the spleen, and the heatmap channels peak
// at kept clicks.
TEST(ClickSimulation, SeedsAndClicksOnPhantom) {
  PhantomOptions opt;
  opt.orientation = PhantomOrientation::RAS;
  const Phantom p = make_phantom(3, 0, opt);
  const LabelVolume label = resize_nearest(p.label, {48, 48, 48});
  const auto names = bundle_label_names();
  for (uint64_t seed = 0; seed < 5; ++seed) {
    Rng rng = click_rng(seed, 0, 0);
    const Guidance g = initial_guidance(label, names, rng);
    for (size_t l = 0; l < 2; ++l)
      for (const auto& pt : guidance_points(g[l]))
        EXPECT_EQ(label.at(pt[0], pt[1], pt[2]), names[l].value) << names[l].name;
    ASSERT_FALSE(guidance_points(g[0]).empty()) << "a spleen seed";
    LabelVolume pred = label;
    std::fill(pred.data.begin(), pred.data.end(), 0);  // the network missed the spleen entirely
    const auto g2 = add_random_guidance(g, find_discrepancy_regions(label, pred, names), label, names, rng);
    EXPECT_TRUE(g2[1].empty() || g2[1].size() == guidance_points(g[1]).size()) << "no false positive: no new bg click";
    for (const auto& pt : guidance_points(g2[0])) EXPECT_EQ(label.at(pt[0], pt[1], pt[2]), 1);
    const auto maps = guidance_heatmaps(g2, label.shape);
    for (size_t l = 0; l < 2; ++l) {
      const auto pts = guidance_points(g2[l]);
      if (pts.empty()) continue;
      const auto& pt = pts[0];
      EXPECT_GT(maps[l][(pt[0] * 48 + pt[1]) * 48 + pt[2]], 0.5f);
    }
  }
}

}  // namespace dex
