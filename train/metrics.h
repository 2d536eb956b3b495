// Segmentation metrics and training logs (spec §10): per-class Dice with MONAI's ignore_empty rule, the bundle's
// val_mean_dice (mean of background and spleen Dice over the classes present), metrics.jsonl lines and the training
// curve image (loss and Dice by epoch).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dex {

// 2|P∩G| / (|P| + |G|) for class `cls` over n voxels; NaN when G has no voxel of the class (ignore_empty).
double dice_score(const uint8_t* pred, const uint8_t* gt, int64_t n, uint8_t cls);
// The bundle's metric: mean over classes 0..num_classes-1 of dice_score, NaN classes skipped (NaN if all are).
double bundle_mean_dice(const uint8_t* pred, const uint8_t* gt, int64_t n, int num_classes = 2);
// Mean of the finite values (NaN when none).
double nan_mean(const std::vector<double>& v);

// One line per epoch in metrics.jsonl.
struct EpochRecord {
  int64_t epoch = 0;          // 1-based, as printed
  int64_t steps = 0;          // optimiser steps in the epoch (this process's batches)
  double train_loss = 0;      // mean Dice+CE over the epoch
  double train_dice = 0;      // bundle mean Dice of the training predictions (after the click round)
  bool validated = false;
  double val_spleen_dice = 0; // mean over validation cases of the spleen Dice (network grid)
  double val_mean_dice = 0;   // the bundle's val_mean_dice
  double seconds = 0;         // wall time of the epoch (training + validation)
  double samples_per_s = 0;   // training volumes per second (all ranks)
  double data_s = 0;          // rank 0's training time spent waiting for samples (made on a loader thread)
  double clicks_s = 0;        // ... in the click round (no-grad forward, discrepancy, new clicks, heatmaps)
  double click_forward_s = 0; // ... of which in its no-grad forwards (upload, forward, download, argmax)
  double step_s = 0;          // ... in the train step (forward, backward, gradient all-reduce, optimiser)
  double val_s = 0;           // wall time of the validation
  double lr = 0;
  bool best = false;          // the best checkpoint was written after this epoch
  nlohmann::json to_json() const;
  static EpochRecord from_json(const nlohmann::json& j);
};

// Rewrites `path` atomically with one JSON object per line.
void write_metrics_jsonl(const std::string& path, const std::vector<EpochRecord>& records);
// Reads back what write_metrics_jsonl wrote (InputError naming the file and line on a malformed line).
std::vector<EpochRecord> read_metrics_jsonl(const std::string& path);

// A line plot on a white canvas with a light grid at every 0.1 of [0, 1]: each series' y (NaN points skipped) against
// x, x spanning the range of all series. Written atomically as an RGB PNG.
struct PlotSeries {
  std::vector<double> x, y;
  std::array<uint8_t, 3> rgb{0, 0, 0};
};
void write_line_plot(const std::string& path, const std::vector<PlotSeries>& series, int width = 640, int height = 360);

// The training curve: training loss (red, scaled to the largest loss) and validation spleen Dice (blue) and mean
// Dice (green) on [0, 1], by epoch, with a light grid at every 0.1; written atomically as an RGB PNG.
void write_training_curve(const std::string& path, const std::vector<EpochRecord>& records, int width = 640,
                          int height = 360);

}  // namespace dex
