// dex-eval (spec §10, issue 7): Dice against the number of clicks on the validation split. Clicks are added one at a
// time, deterministically: after each prediction, the largest 3D connected error region (missed spleen or false
// spleen, each labelled on its own with 6-connectivity) gets one click at its voxel farthest from the region's
// boundary (chessboard distance; the image border counts as boundary; ties -> first in raster order; voxels clicked
// before are not part of any region, so an ignored click is never repeated at the same voxel): a spleen click
// for a miss, a background click for a false positive. Clicks are in the image file's voxel indices, as a user gives
// them, and go through the same pre-processing as dex-infer's. Reported per case and as means: the spleen Dice in
// the image's own grid and the bundle's metric (mean of background and spleen Dice, spec §10) on the network grid.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/click_guidance.h"
#include "data/volume.h"
#include "train/label_resize.h"

namespace dex {

// 3D connected components of a C-order mask (axis 2 fastest), 6- or 26-connectivity. Labels 1..n in raster order of
// each component's first voxel; returns n. `sizes` (optional) gets the voxel count of component i at index i - 1.
int32_t connected_components_3d(const uint8_t* mask, const std::array<int64_t, 3>& shape, std::vector<int32_t>& labels,
                                int connectivity = 6, std::vector<int64_t>* sizes = nullptr);

// The next evaluation click for prediction `pred` against ground truth `gt` (same grid; foreground = value fg).
struct EvalClick {
  bool found = false;            // false: no error voxel left
  bool spleen = true;            // true: the region is missed foreground (click foreground), false: false positive
  std::array<int64_t, 3> ijk{0, 0, 0};
  int64_t region_voxels = 0;
  int32_t depth = 0;             // chessboard distance of the click to the region's boundary (1 = on the boundary)
};
// Voxels in `exclude` (earlier clicks) are left out of the error regions, so a click the model ignores is not
// repeated at the same voxel.
EvalClick next_eval_click(const LabelVolume& pred, const LabelVolume& gt, uint8_t fg = 1,
                          const std::vector<std::array<int64_t, 3>>& exclude = {});

struct EvalConfig {
  std::string model_path;
  std::string dataset_dir;
  std::string output_dir;          // eval.json, eval.csv, dice_vs_clicks.png (must exist)
  std::vector<int> clicks = {0, 1, 3, 5, 10};
  int64_t num_val = 9;             // the last num_val training pairs (the trainer's validation split)
  bool all_cases = false;          // evaluate every training pair instead (e.g. the real case)
  int64_t max_cases = 0;           // 0: all of the selected cases
  std::string device = "cpu";
  double sigma = kGuidanceSigma;   // click heatmap sigma (grid voxels): the training config's guidance_sigma
  LabelResize label_resize = LabelResize::Nearest;  // target of the grid metrics: the training config's label_resize
  bool progress = true;
};

struct CaseEval {
  std::string image, label;
  std::vector<double> dice_image;    // spleen Dice in the image's grid, one per EvalConfig::clicks entry
  std::vector<double> dice_spleen_grid;
  std::vector<double> mean_dice_grid;  // the bundle's metric on the network grid
  std::vector<std::array<int64_t, 3>> click_ijk;  // the clicks placed, in order (file voxel indices)
  std::vector<bool> click_spleen;
  double seconds = 0;
};

struct EvalResult {
  std::vector<int> clicks;
  std::vector<CaseEval> cases;
  std::vector<double> mean_dice_image, mean_dice_spleen_grid, mean_mean_dice_grid;  // over cases, per click count
  double seconds = 0;
};

// The trainer writes config.json beside model.safetensors: when MODEL's folder has one, its label_resize and
// guidance_sigma become cfg.label_resize and cfg.sigma (so a train_small model is evaluated on the targets and
// heatmaps it was trained with). Returns false (cfg unchanged) without that file; InputError if it is not valid JSON.
bool apply_training_config_defaults(EvalConfig& cfg);

// InputError for a missing model/dataset/output folder or a model that is not a DeepEdit network.
EvalResult evaluate(const EvalConfig& cfg);
void write_eval_json(const std::string& path, const EvalConfig& cfg, const EvalResult& r);
void write_eval_csv(const std::string& path, const EvalResult& r);

}  // namespace dex
