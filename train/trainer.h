// The DeepEdit training loop of the bundle (spec §7-§10) on one process or as one rank of a data-parallel job:
//
//   dataset -> split (last num_val validate) -> cache (read, labels, RAS, window) -> per epoch, the sampler order
//   (pure function of seed, epoch, rank, size) -> augment (seed, epoch, case) -> resize (area image, nearest label)
//   -> initial seeds + heatmaps -> [p: no-grad forward -> argmax -> discrepancy -> new clicks -> prune -> heatmaps
//   | else: click channels zeroed] -> forward -> Dice+CE -> backward -> gradients averaged over ranks -> Adam.
//   Validation every val_interval epochs: one click round always (p = 1.0); the spleen Dice and the bundle's mean
//   of background and spleen Dice on the network grid; the best model kept (save_model, atomic).
//
// Every random draw is a pure function of (seed, epoch, case index[, round]): an epoch replays bit for bit, which
// is what makes --resume (from the state saved after each epoch) equal to an uninterrupted run, and what makes
// N ranks with batch 1 see the same samples as one process with batch N.
//
// Outputs under output_dir (rank 0 only): model.safetensors (best), state_latest.safetensors (full training state
// after the last finished epoch) + state_latest.json (best metric so far), metrics.jsonl, curve.png.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/click_guidance.h"
#include "data/click_simulation.h"
#include "data/dataset.h"
#include "layers/dynunet.h"
#include "train/communicator.h"
#include "train/label_resize.h"
#include "train/metrics.h"

namespace dex {

struct TrainConfig {
  std::string dataset_dir;
  std::string output_dir = "runs/train";
  LabelNames label_names = bundle_label_names();
  std::array<int64_t, 3> spatial_size{128, 128, 128};
  LabelResize label_resize = LabelResize::Nearest;  // the target label onto the grid (train/label_resize.h)
  double guidance_sigma = kGuidanceSigma;  // click heatmap Gaussian sigma in grid voxels (the bundle: 3 on 128^3)
  DynUNetConfig arch;                    // from filters / strides / kernel_sizes / upsample_kernel_sizes
  double learning_rate = 1e-4;
  int64_t lr_step_size = 1000;           // StepLR, stepped per epoch
  double lr_gamma = 0.1;
  int64_t max_epochs = 500;
  int64_t val_interval = 1;
  int64_t num_val = 9;                   // the last num_val cases validate
  int64_t max_train_cases = 0;           // 0: every training case (else the first N of the split)
  int64_t steps_per_epoch = 0;           // 0: the whole epoch (else stop the epoch after N steps: benchmarks)
  int64_t batch_size = 1;                // per rank
  double bucket_mb = 25;                 // data parallel: gradient bucket size in MiB, all-reduced during the backward
  bool amp = true;                       // mixed precision on CUDA (autocast f16 + loss scaler); fp32 on the CPU
  bool amp_emulate = false;              // mixed precision on any device (the CPU emulates f16 operands): tests
  double cache_rate = 1.0;
  int num_workers = 4;
  double deepgrow_probability_train = 0.4;
  double deepgrow_probability_val = 1.0;
  int max_interactions = 1;
  uint64_t seed = 123;
  std::string device = "cpu";
  bool progress = true;                  // the live per-step line on stderr
};

// The config from JSON (the keys of configs/train.json). Unknown keys and bad values are InputErrors naming the key
// and `name`.
TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& name);
nlohmann::json train_config_to_json(const TrainConfig& c);

struct ValidationResult {
  double spleen_dice = 0;  // mean over cases (NaN cases skipped)
  double mean_dice = 0;    // the bundle's val_mean_dice
  int64_t cases = 0;
};

class Trainer {
 public:
  // Reads the dataset listing and fills the caches; builds and initialises the network (seed). `comm` must outlive
  // the trainer.
  Trainer(const TrainConfig& cfg, Communicator& comm);
  ~Trainer();

  // Loads output_dir's state_latest (or `path`): weights, Adam, counters, best metric. InputError naming the file
  // when it is missing, corrupt or for another architecture.
  void resume(const std::string& path = "");
  // Runs the remaining epochs (from the resumed epoch to max_epochs). Returns the records of the epochs it ran.
  std::vector<EpochRecord> run();
  // One epoch of training (+ validation when due), checkpoints and logs. `epoch` is 0-based.
  EpochRecord run_epoch(int64_t epoch);
  ValidationResult validate(int64_t epoch);

  const TrainConfig& config() const { return m_cfg; }
  DynUNet& model();
  int64_t next_epoch() const;
  double best_metric() const { return m_best_metric; }
  std::string state_path() const;
  std::string model_path() const;
  size_t train_cases() const;
  size_t val_cases() const;
  // Called after every finished epoch (tests use it to stop a run midway).
  std::function<void(const EpochRecord&)> on_epoch_end;

 struct Impl;  // opaque: the network, optimiser, caches (trainer.cpp)

 private:
  std::unique_ptr<Impl> m;
  TrainConfig m_cfg;
  Communicator& m_comm;
  double m_best_metric = -1;
  int64_t m_best_epoch = -1;
};

}  // namespace dex
