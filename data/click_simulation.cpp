#include "data/click_simulation.h"

#include <algorithm>
#include <cmath>

#include "data/click_guidance.h"
#include "data/connected_components.h"
#include "data/distance_transform.h"
#include "kernels/common.h"

namespace dex {

namespace {

// numpy RandomState.choice(n, p = w / sum(w)): inverse CDF of one uniform draw over the cumulative weights.
// Weights are exp(d) - 1 in double; for d > 700 (beyond the 128^3 grid, spec §13.9) they are rescaled by exp(-dmax)
// so they stay finite (same distribution). When every d is -1 (region = whole grid), numpy's p is uniform.
int64_t draw_by_distance(const std::vector<int32_t>& dist, const std::vector<int64_t>& idx, Rng& rng) {
  DEX_CHECK(!idx.empty(), "draw_by_distance: empty region");
  int32_t dmax = -1;
  for (int64_t v : idx) dmax = std::max(dmax, dist[v]);
  if (dmax <= 0) return idx[rng.below(idx.size())];  // d = -1 everywhere: uniform
  const double shift = dmax > 700 ? static_cast<double>(dmax) : 0.0;
  std::vector<double> cdf(idx.size());
  double total = 0;
  for (size_t i = 0; i < idx.size(); ++i) {
    total += std::exp(dist[idx[i]] - shift) - std::exp(-shift);
    cdf[i] = total;
  }
  const double u = rng.uniform() * total;
  const size_t pick = static_cast<size_t>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
  return idx[std::min(pick, idx.size() - 1)];
}

bool has_minus_one(const SimClick& c) { return std::find(c.begin(), c.end(), int64_t{-1}) != c.end(); }

}  // namespace

LabelNames bundle_label_names() { return {{"spleen", 1}, {"background", 0}}; }

std::vector<uint8_t> label_mask(const LabelVolume& label, const LabelName& name) {
  std::vector<uint8_t> m(label.data.size());
  for (size_t v = 0; v < m.size(); ++v) m[v] = label.data[v] == name.value;
  return m;
}

std::vector<std::vector<int64_t>> find_valid_slices(const LabelVolume& label, const LabelNames& names) {
  const auto& s = label.shape;
  std::vector<std::vector<int64_t>> out;
  for (const auto& name : names) {
    std::vector<uint8_t> present(static_cast<size_t>(s[2]), 0);
    for (int64_t i = 0; i < s[0]; ++i)
      for (int64_t j = 0; j < s[1]; ++j)
        for (int64_t k = 0; k < s[2]; ++k)
          if (label.at(i, j, k) == name.value) present[k] = 1;
    std::vector<int64_t> ids;
    for (int64_t k = 0; k < s[2]; ++k)
      if (present[k]) ids.push_back(k);
    if (ids.empty()) ids.assign(10, -1);
    out.push_back(std::move(ids));
  }
  return out;
}

Guidance add_initial_seed_points(const LabelVolume& label, const LabelNames& names,
                                 const std::vector<std::vector<int64_t>>& valid_slices, Rng& rng,
                                 int connected_regions) {
  DEX_CHECK(valid_slices.size() == names.size(), "add_initial_seed_points: ", valid_slices.size(),
            " slice lists for ", names.size(), " labels");
  const int64_t H = label.shape[0], W = label.shape[1], D = label.shape[2];
  DEX_CHECK(H > 0 && W > 0 && D > 0, "add_initial_seed_points: empty label volume");
  const SimClick missing{-1, -1, -1, -1};
  Guidance g(names.size());
  std::vector<uint8_t> mask(static_cast<size_t>(H * W)), comp(mask.size());
  std::vector<int32_t> blobs;
  for (size_t l = 0; l < names.size(); ++l) {
    const auto& ids = valid_slices[l];
    DEX_CHECK(!ids.empty(), "add_initial_seed_points: no slice list for label ", names[l].name);
    const int64_t sid = ids[rng.below(ids.size())];
    const int64_t z = sid < 0 ? sid + D : sid;  // numpy: label[..., -1] is the last slice
    DEX_CHECK(z >= 0 && z < D, "add_initial_seed_points: slice ", sid, " outside depth ", D);
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) mask[i * W + j] = label.at(i, j, z) == names[l].value;
    const int32_t n = connected_components_2d(mask.data(), H, W, blobs);
    if (n == 0) {
      g[l].push_back(missing);
      continue;
    }
    for (int32_t r = 1; r <= connected_regions; ++r) {
      std::vector<int64_t> idx;
      for (int64_t p = 0; p < H * W; ++p) {
        comp[p] = blobs[p] == r;
        if (comp[p]) idx.push_back(p);
      }
      if (idx.empty()) {
        g[l].push_back(missing);
        continue;
      }
      const auto dist = distance_transform_cdt_2d(comp.data(), H, W);
      const int64_t p = draw_by_distance(dist, idx, rng);
      g[l].push_back({dist[p], p / W, p % W, sid});
    }
  }
  return g;
}

Guidance initial_guidance(const LabelVolume& label, const LabelNames& names, Rng& rng) {
  return add_initial_seed_points(label, names, find_valid_slices(label, names), rng);
}

std::vector<Discrepancy> find_discrepancy_regions(const LabelVolume& label, const LabelVolume& pred,
                                                  const LabelNames& names) {
  DEX_CHECK(label.shape == pred.shape, "find_discrepancy_regions: label ", label.shape[0], "x", label.shape[1], "x",
            label.shape[2], " vs prediction ", pred.shape[0], "x", pred.shape[1], "x", pred.shape[2]);
  std::vector<Discrepancy> out(names.size());
  for (size_t l = 0; l < names.size(); ++l) {
    const size_t n = label.data.size();
    out[l].pos.assign(n, 0);
    out[l].neg.assign(n, 0);
    if (names[l].value < 0 || names[l].value > 255) continue;  // no uint8 voxel has it: no discrepancy
    const uint8_t v = static_cast<uint8_t>(names[l].value);
    const uint8_t* gt = label.data.data();
    const uint8_t* pr = pred.data.data();
    uint8_t* pos = out[l].pos.data();
    uint8_t* neg = out[l].neg.data();
    for (size_t i = 0; i < n; ++i) {  // branch-free, so it vectorises
      const uint8_t g = gt[i] == v, p = pr[i] == v;
      pos[i] = g & (p ^ 1);
      neg[i] = p & (g ^ 1);
    }
  }
  return out;
}

bool sample_click(const uint8_t* region, const std::array<int64_t, 3>& shape, Rng& rng, SimClick* click) {
  // The distance transform runs on the region's bounding box grown by one voxel and clipped to the grid: inside the
  // grid that margin is all zeros, so every region voxel's nearest zero is in the crop (chessboard distance), and
  // where the box meets the grid's border the crop's border is the grid's (not outside), as before. Same distances,
  // same raster order of the candidates, so the same draw as on the whole grid, at the cost of the box (the new
  // clicks of a training click round at 128^3: 31 -> 16 ms on this 2-core machine, dex_bench_cpu BM_ClickRound128/1).
  std::array<int64_t, 3> lo = shape, hi = {-1, -1, -1};
  for (int64_t i = 0; i < shape[0]; ++i)
    for (int64_t j = 0; j < shape[1]; ++j) {
      const uint8_t* row = region + (i * shape[1] + j) * shape[2];
      const uint8_t* end = row + shape[2];
      const uint8_t* first = std::find_if(row, end, [](uint8_t x) { return x != 0; });
      if (first == end) continue;
      const uint8_t* last = end - 1;
      while (*last == 0) --last;
      lo[0] = std::min(lo[0], i), hi[0] = std::max(hi[0], i);
      lo[1] = std::min(lo[1], j), hi[1] = std::max(hi[1], j);
      lo[2] = std::min<int64_t>(lo[2], first - row), hi[2] = std::max<int64_t>(hi[2], last - row);
    }
  if (hi[0] < 0) return false;
  std::array<int64_t, 3> cs;
  for (int a = 0; a < 3; ++a) {
    lo[a] = std::max<int64_t>(0, lo[a] - 1);
    hi[a] = std::min<int64_t>(shape[a] - 1, hi[a] + 1);
    cs[a] = hi[a] - lo[a] + 1;
  }
  std::vector<uint8_t> crop(static_cast<size_t>(cs[0] * cs[1] * cs[2]));
  std::vector<int64_t> idx;
  for (int64_t i = 0, c = 0; i < cs[0]; ++i)
    for (int64_t j = 0; j < cs[1]; ++j) {
      const uint8_t* row = region + ((lo[0] + i) * shape[1] + lo[1] + j) * shape[2] + lo[2];
      for (int64_t k = 0; k < cs[2]; ++k, ++c)
        if ((crop[static_cast<size_t>(c)] = row[k] ? 1 : 0)) idx.push_back(c);
    }
  const auto dist = distance_transform_cdt_3d(crop.data(), cs);
  const int64_t p = draw_by_distance(dist, idx, rng);
  *click = {dist[p], lo[0] + p / (cs[1] * cs[2]), lo[1] + (p / cs[2]) % cs[1], lo[2] + p % cs[2]};
  return true;
}

Guidance add_random_guidance(const Guidance& current, const std::vector<Discrepancy>& discrepancy,
                             const LabelVolume& label, const LabelNames& names, Rng& rng) {
  DEX_CHECK(current.size() == names.size() && discrepancy.size() == names.size(),
            "add_random_guidance: guidance/discrepancy lists do not match the ", names.size(), " labels");
  Guidance g(names.size());
  for (size_t l = 0; l < names.size(); ++l)
    for (const auto& c : current[l])
      if (!has_minus_one(c)) g[l].push_back(c);
  std::vector<std::vector<uint8_t>> masks;
  for (const auto& name : names) masks.push_back(label_mask(label, name));
  const size_t n = label.data.size();
  std::vector<uint8_t> region(n);
  for (size_t l = 0; l < names.size(); ++l) {
    const auto& d = discrepancy[l];
    DEX_CHECK(d.pos.size() == n && d.neg.size() == n, "add_random_guidance: discrepancy size mismatch");
    SimClick c;
    if (sample_click(d.pos.data(), label.shape, rng, &c)) g[l].push_back(c);
    for (size_t m = 0; m < names.size(); ++m) {
      int64_t area = 0;
      const uint8_t* neg = d.neg.data();
      const uint8_t* mask = masks[m].data();
      for (size_t v = 0; v < n; ++v) {  // branch-free, so it vectorises
        region[v] = static_cast<uint8_t>((neg[v] != 0) & (mask[v] != 0));
        area += region[v];
      }
      if (area > 50 && sample_click(region.data(), label.shape, rng, &c)) g[m].push_back(c);
    }
  }
  prune_guidance(g, rng);
  return g;
}

void prune_guidance(Guidance& guidance, Rng& rng) {
  const size_t L = guidance.size();
  if (L == 0) return;
  const size_t max_clicks = 1 + rng.below(10);
  std::vector<bool> keep(L, false);
  size_t kept = 0, counter = 0;
  while (true) {
    const size_t aux = rng.below(L);
    if (!keep[aux]) {
      keep[aux] = true;
      ++kept;
      counter += guidance[aux].size();
      if (counter >= max_clicks) {
        for (size_t l = 0; l < L; ++l)
          if (!keep[l]) guidance[l].clear();
        break;
      }
    }
    if (kept == L) break;
  }
}

std::vector<std::array<int, 3>> guidance_points(const std::vector<SimClick>& clicks) {
  std::vector<std::array<int, 3>> pts;
  for (const auto& c : clicks) {
    if (std::any_of(c.begin(), c.end(), [](int64_t v) { return v < 0; })) continue;
    pts.push_back({static_cast<int>(c[1]), static_cast<int>(c[2]), static_cast<int>(c[3])});
  }
  return pts;
}

std::vector<std::vector<float>> guidance_heatmaps(const Guidance& guidance, const std::array<int64_t, 3>& shape,
                                                  float sigma) {
  const std::array<int, 3> s{static_cast<int>(shape[0]), static_cast<int>(shape[1]), static_cast<int>(shape[2])};
  std::vector<std::vector<float>> out;
  for (const auto& clicks : guidance) out.push_back(gaussian_heatmap(guidance_points(clicks), s, sigma));
  return out;
}

Rng click_rng(uint64_t seed, uint64_t epoch, uint64_t sample, uint64_t round) {
  return Rng(seed, rng_stream(RngStream::Clicks, (epoch << 24) ^ (round << 20) ^ sample));
}

}  // namespace dex
