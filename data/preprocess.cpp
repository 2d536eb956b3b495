#include "data/preprocess.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "data/click_guidance.h"
#include "data/intensity.h"
#include "data/resize.h"
#include "kernels/common.h"

namespace dex {

Preprocessed preprocess_image(const Volume& file_volume, const PreprocessOptions& opt, PreprocessTimes* times) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); };
  auto t0 = Clock::now();
  DEX_CHECK(static_cast<int64_t>(file_volume.data.size()) == file_volume.size() && file_volume.size() > 0,
            "preprocess_image: empty volume or data size does not match the shape");
  for (int a = 0; a < 3; ++a)
    DEX_INPUT_CHECK(opt.spatial_size[a] > 0 && opt.spatial_size[a] <= 4096, "spatial_size must be in [1, 4096], got ",
                    opt.spatial_size[a]);
  Preprocessed p;
  GridGeometry& g = p.record.geometry;
  g.file_shape = file_volume.shape;
  g.file_affine = file_volume.affine;
  g.orientation = ras_orientation(file_volume.affine);
  g.spatial_size = opt.spatial_size;
  Volume oriented = reorient(file_volume, g.orientation);
  g.oriented_shape = oriented.shape;
  g.oriented_affine = oriented.affine;
  if (times) times->orient_ms = ms(t0);
  t0 = Clock::now();
  window_intensity_inplace(oriented, opt.a_min, opt.a_max, opt.b_min, opt.b_max);
  if (times) times->window_ms = ms(t0);
  t0 = Clock::now();
  p.ct = resize_area(oriented, opt.spatial_size);
  if (times) times->resize_ms = ms(t0);
  p.record.options = opt;
  return p;
}

GridClicks map_clicks(const Clicks& clicks, const PreprocessRecord& rec, ClickStages* spleen_stages,
                      ClickStages* background_stages) {
  validate_clicks(clicks, rec.geometry.file_shape, clicks.image.empty() ? "clicks" : "clicks for " + clicks.image);
  GridClicks g;
  g.spleen = map_clicks_to_grid(clicks.spleen, rec.geometry, rec.options.bundle_compat, spleen_stages);
  g.background = map_clicks_to_grid(clicks.background, rec.geometry, rec.options.bundle_compat, background_stages);
  return g;
}

namespace {
std::array<int, 3> grid_shape(const Volume& ct) {
  return {static_cast<int>(ct.shape[0]), static_cast<int>(ct.shape[1]), static_cast<int>(ct.shape[2])};
}
}  // namespace

std::vector<float> assemble_input_ndhwc(const Volume& ct, const GridClicks& clicks, float sigma) {
  const int64_t n = ct.size();
  DEX_CHECK(static_cast<int64_t>(ct.data.size()) == n, "assemble_input: CT data size does not match its shape");
  std::vector<float> x(static_cast<size_t>(3 * n));
  for (int64_t i = 0; i < n; ++i) x[3 * i] = ct.data[i];
  gaussian_heatmap_into(clicks.spleen, grid_shape(ct), x.data() + 1, 3, sigma);
  gaussian_heatmap_into(clicks.background, grid_shape(ct), x.data() + 2, 3, sigma);
  return x;
}

std::vector<float> assemble_input_cdhw(const Volume& ct, const GridClicks& clicks, float sigma) {
  const int64_t n = ct.size();
  DEX_CHECK(static_cast<int64_t>(ct.data.size()) == n, "assemble_input: CT data size does not match its shape");
  std::vector<float> x(static_cast<size_t>(3 * n));
  std::copy(ct.data.begin(), ct.data.end(), x.begin());
  gaussian_heatmap_into(clicks.spleen, grid_shape(ct), x.data() + n, 1, sigma);
  gaussian_heatmap_into(clicks.background, grid_shape(ct), x.data() + 2 * n, 1, sigma);
  return x;
}

namespace {

// probs: two C-order channels (background, spleen) on the spatial_size grid.
Postprocessed invert(const std::vector<float>& bg, const std::vector<float>& fg, const PreprocessRecord& rec) {
  const GridGeometry& g = rec.geometry;
  const int64_t m = g.oriented_shape[0] * g.oriented_shape[1] * g.oriented_shape[2];
  std::vector<float> bg_o(static_cast<size_t>(m)), fg_o(static_cast<size_t>(m));
  // Invertd: area resize back to the oriented shape (same mode as forward), then undo the orientation.
  resize_area(bg.data(), g.spatial_size, bg_o.data(), g.oriented_shape);
  resize_area(fg.data(), g.spatial_size, fg_o.data(), g.oriented_shape);
  const Orientation inv = g.orientation.inverse();
  Postprocessed out;
  out.prob_spleen.shape = g.file_shape;
  out.prob_spleen.affine = g.file_affine;
  out.prob_spleen.data.resize(static_cast<size_t>(m));
  reorient_buffer(fg_o.data(), g.oriented_shape, inv, out.prob_spleen.data.data());
  std::vector<float> bg_f(static_cast<size_t>(m));
  reorient_buffer(bg_o.data(), g.oriented_shape, inv, bg_f.data());
  out.mask.shape = g.file_shape;
  out.mask.affine = g.file_affine;
  out.mask.data.resize(static_cast<size_t>(m));
  // argmax over (background, spleen): ties go to background (the first index), as torch.argmax.
  for (int64_t i = 0; i < m; ++i) out.mask.data[i] = out.prob_spleen.data[i] > bg_f[i] ? 1 : 0;
  return out;
}

void split_channels(const float* x, OutputLayout layout, int64_t n, std::vector<float>& c0, std::vector<float>& c1) {
  c0.resize(static_cast<size_t>(n));
  c1.resize(static_cast<size_t>(n));
  if (layout == OutputLayout::NDHWC) {
    for (int64_t i = 0; i < n; ++i) {
      c0[i] = x[2 * i];
      c1[i] = x[2 * i + 1];
    }
  } else {
    std::copy(x, x + n, c0.begin());
    std::copy(x + n, x + 2 * n, c1.begin());
  }
}

}  // namespace

Postprocessed postprocess_logits(const float* logits, OutputLayout layout, const PreprocessRecord& rec) {
  const auto& s = rec.geometry.spatial_size;
  const int64_t n = s[0] * s[1] * s[2];
  std::vector<float> bg, fg;
  split_channels(logits, layout, n, bg, fg);
  // softmax over the two channels, float32 (max subtracted).
  for (int64_t i = 0; i < n; ++i) {
    const float mx = std::max(bg[i], fg[i]);
    const float e0 = std::exp(bg[i] - mx), e1 = std::exp(fg[i] - mx);
    const float sum = e0 + e1;
    bg[i] = e0 / sum;
    fg[i] = e1 / sum;
  }
  return invert(bg, fg, rec);
}

Postprocessed postprocess_probabilities(const float* probs, OutputLayout layout, const PreprocessRecord& rec) {
  const auto& s = rec.geometry.spatial_size;
  const int64_t n = s[0] * s[1] * s[2];
  std::vector<float> bg, fg;
  split_channels(probs, layout, n, bg, fg);
  return invert(bg, fg, rec);
}

}  // namespace dex
