// Click mode on a model trained on phantoms (issue 6): a click changes the output near the click, and nowhere it
// should not. The model is tests/data/models/deepedit_phantom_small.safetensors, made by scripts/make_click_model.sh
// (dex-phantom + dex-train with configs/train_small.json on the CPU); the cases are phantoms of another seed, which
// the model never saw. DEX_CLICK_MODEL=path runs the same checks on another model.
//
// Per case: the automatic segmentation, then one spleen click where a dex-eval user would put it (the voxel of the
// largest missed region farthest from its boundary), both with the spleen probability. Distances are in mm from the
// click. "Near" is within 2 cm; "far" is beyond 3 sigma of the click's heatmap (sigma = 3 network-grid voxels, so
// 9 grid voxels of the coarsest axis), where the heatmap is below exp(-4.5) = 1.1% of its peak.
// Measured with the committed model (8 cases, far radius 105-118 mm): the mean probability change within 2 cm is
// +0.005 to +0.54, beyond the far radius 1.7e-5 to 9.3e-5 (at most 0.3% of the near change); 7 of 8 cases flip no
// far mask voxel, one flips 14 of 308,024; 6 of 8 clicks raise the probability by more than 0.1, 5 of 8 clicked
// voxels join the mask. Clicking background instead of spleen at the same voxels fails 10 of these checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "data/click_guidance.h"
#include "data/phantom.h"
#include "infer/segmenter.h"
#include "train/evaluator.h"

namespace dex {
namespace {

std::string click_model() {
  const char* env = std::getenv("DEX_CLICK_MODEL");
  return env ? env : std::string(DEX_TEST_DATA) + "/models/deepedit_phantom_small.safetensors";
}

// The next evaluation click among the misses only (pred & gt hides the false positives).
EvalClick miss_click(const LabelVolume& pred, const LabelVolume& gt) {
  LabelVolume misses_only = pred;
  for (size_t v = 0; v < pred.data.size(); ++v) misses_only.data[v] = pred.data[v] & gt.data[v];
  return next_eval_click(misses_only, gt);
}

struct Response {
  double p_click_before = 0, p_click_after = 0;  // spleen probability at the clicked voxel
  double near_dp = 0;       // mean change of the spleen probability within 2 cm
  double near_abs = 0;      // mean |change| within 2 cm
  double far_abs = 0;       // mean |change| beyond the far radius
  int64_t far_voxels = 0, far_mask_changes = 0;
  double far_mm = 0;
};

Response response(const Phantom& ph, const Segmentation& before, const Segmentation& after,
                  const std::array<int64_t, 3>& c, double far_mm) {
  Response r;
  r.far_mm = far_mm;
  r.p_click_before = before.probability.at(c[0], c[1], c[2]);
  r.p_click_after = after.probability.at(c[0], c[1], c[2]);
  const Mat4& A = ph.ct.affine;
  int64_t near_n = 0;
  for (int64_t i = 0; i < ph.ct.shape[0]; ++i)
    for (int64_t j = 0; j < ph.ct.shape[1]; ++j)
      for (int64_t k = 0; k < ph.ct.shape[2]; ++k) {
        double d2 = 0;
        for (int a = 0; a < 3; ++a) {
          const double d = A[a][0] * double(i - c[0]) + A[a][1] * double(j - c[1]) + A[a][2] * double(k - c[2]);
          d2 += d * d;
        }
        const int64_t v = ph.ct.index(i, j, k);
        const double dp = double(after.probability.data[v]) - double(before.probability.data[v]);
        if (d2 <= 20.0 * 20.0) {
          r.near_dp += dp;
          r.near_abs += std::fabs(dp);
          ++near_n;
        } else if (d2 > far_mm * far_mm) {
          r.far_abs += std::fabs(dp);
          ++r.far_voxels;
          r.far_mask_changes += before.mask.data[v] != after.mask.data[v];
        }
      }
  r.near_dp /= double(std::max<int64_t>(near_n, 1));
  r.near_abs /= double(std::max<int64_t>(near_n, 1));
  r.far_abs /= double(std::max<int64_t>(r.far_voxels, 1));
  return r;
}

TEST(click_response, a_spleen_click_raises_the_spleen_near_it_and_barely_moves_anything_far_away) {
  Segmenter seg(click_model());
  const auto& info = seg.model_info();
  const double sigma = kGuidanceSigma;  // the Segmenter's heatmap sigma (grid voxels), as in training
  int cases = 0, clicked_became_spleen = 0, strong = 0;
  for (int64_t idx = 0; idx < 8; ++idx) {
    const Phantom ph = make_phantom(2026, idx);  // training used seed 7
    // The coarsest network-grid spacing of this case (mm): the file's extent along each axis over the grid size
    // it is resized to (axes are permuted by the orientation, so take the largest file extent per grid voxel).
    double grid_mm = 0;
    for (int a = 0; a < 3; ++a) {
      const double col = std::sqrt(ph.ct.affine[0][a] * ph.ct.affine[0][a] + ph.ct.affine[1][a] * ph.ct.affine[1][a] +
                                   ph.ct.affine[2][a] * ph.ct.affine[2][a]);
      for (int g = 0; g < 3; ++g) grid_mm = std::max(grid_mm, col * double(ph.ct.shape[a]) / double(info.spatial_size[g]));
    }
    seg.set_image(ph.ct);
    const Segmentation before = seg.segment({}, true);
    const EvalClick c = miss_click(before.mask, ph.label);
    if (!c.found) continue;  // nothing missed: no spleen click to give
    Clicks clicks;
    clicks.spleen.push_back({double(c.ijk[0]), double(c.ijk[1]), double(c.ijk[2])});
    const Segmentation after = seg.segment(clicks, true);
    const Response r = response(ph, before, after, c.ijk, 3.0 * sigma * grid_mm);
    std::printf("case %lld: p(click) %.3f -> %.3f; within 2 cm mean dp %+.3f (|dp| %.3f); beyond %.0f mm |dp| %.2e, "
                "%lld of %lld mask voxels changed\n",
                static_cast<long long>(idx), r.p_click_before, r.p_click_after, r.near_dp, r.near_abs, r.far_mm,
                r.far_abs, static_cast<long long>(r.far_mask_changes), static_cast<long long>(r.far_voxels));
    ++cases;
    clicked_became_spleen += r.p_click_after > 0.5;
    strong += r.p_click_after > r.p_click_before + 0.1 && r.near_dp > 0.1;
    // Near the click the spleen probability rises, in every case.
    EXPECT_GT(r.near_dp, 0.0) << "case " << idx;
    EXPECT_GT(r.p_click_after, r.p_click_before) << "case " << idx;
    // Far from it (where the heatmap is below 1.1% of its peak) the probability moves 100x less than near the
    // click, and at most 1 in 10,000 mask voxels flips (far boundary voxels sitting at p ~ 0.5).
    EXPECT_LT(r.far_abs, 0.01 * r.near_abs) << "case " << idx;
    EXPECT_LE(r.far_mask_changes * 10000, r.far_voxels) << "case " << idx;
  }
  EXPECT_GE(cases, 6);
  // In most cases the click is decisive: the probability at the click and within 2 cm rises by more than 0.1, and
  // the clicked voxel joins the mask. (The committed model: 6 and 5 of 8; the 32^3 model sees a click as a heatmap
  // as wide as the spleen, and a few missed regions it keeps rejecting.)
  EXPECT_GE(strong * 2, cases) << strong << " of " << cases;
  EXPECT_GE(clicked_became_spleen * 2, cases) << clicked_became_spleen << " of " << cases;
}

}  // namespace
}  // namespace dex
