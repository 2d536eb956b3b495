// dex-eval: the 3D labeller, the deterministic click rule, and an end-to-end evaluation of a briefly trained model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/nifti_io.h"
#include "data/phantom.h"
#include "infer/cli_args.h"
#include "train/communicator.h"
#include "train/evaluator.h"
#include "train/trainer.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using namespace dex;

namespace {

LabelVolume empty_volume(std::array<int64_t, 3> shape) {
  LabelVolume v;
  v.shape = shape;
  v.data.assign(static_cast<size_t>(shape[0] * shape[1] * shape[2]), 0);
  return v;
}

void fill_box(LabelVolume& v, std::array<int64_t, 3> lo, std::array<int64_t, 3> hi, uint8_t value) {
  for (int64_t i = lo[0]; i <= hi[0]; ++i)
    for (int64_t j = lo[1]; j <= hi[1]; ++j)
      for (int64_t k = lo[2]; k <= hi[2]; ++k) v.at(i, j, k) = value;
}

}  // namespace

TEST(ConnectedComponents3d, SixVersusTwentySixAndRasterNumbering) {
  LabelVolume m = empty_volume({4, 5, 6});
  m.at(0, 0, 0) = 1;
  m.at(1, 1, 1) = 1;  // touches (0,0,0) only through a corner
  fill_box(m, {2, 2, 3}, {3, 4, 5}, 1);  // a 2x3x3 box
  m.at(0, 4, 5) = 1;  // alone
  std::vector<int32_t> lab;
  std::vector<int64_t> sizes;
  EXPECT_EQ(connected_components_3d(m.data.data(), m.shape, lab, 6, &sizes), 4);
  EXPECT_EQ(sizes, (std::vector<int64_t>{1, 1, 1, 18}));  // raster order of the first voxel: (0,0,0), (0,4,5), ...
  EXPECT_EQ(lab[m.index(0, 0, 0)], 1);
  EXPECT_EQ(lab[m.index(0, 4, 5)], 2);
  EXPECT_EQ(lab[m.index(1, 1, 1)], 3);
  EXPECT_EQ(lab[m.index(3, 4, 5)], 4);
  EXPECT_EQ(lab[m.index(2, 0, 0)], 0);
  EXPECT_EQ(connected_components_3d(m.data.data(), m.shape, lab, 26, &sizes), 3);
  EXPECT_EQ(sizes, (std::vector<int64_t>{2, 1, 18}));
  EXPECT_EQ(lab[m.index(1, 1, 1)], 1);
  EXPECT_THROW(connected_components_3d(m.data.data(), m.shape, lab, 8), Error);
}

TEST(EvalClick, LargestRegionDeepestVoxel) {
  LabelVolume gt = empty_volume({20, 20, 20});
  fill_box(gt, {2, 3, 4}, {8, 9, 10}, 1);  // 7^3 spleen, centre (5, 6, 7)
  LabelVolume pred = empty_volume(gt.shape);
  // Nothing predicted: a spleen click at the centre of the cube (chessboard depth 4).
  EvalClick c = next_eval_click(pred, gt);
  ASSERT_TRUE(c.found);
  EXPECT_TRUE(c.spleen);
  EXPECT_EQ(c.ijk, (std::array<int64_t, 3>{5, 6, 7}));
  EXPECT_EQ(c.region_voxels, 343);
  EXPECT_EQ(c.depth, 4);
  // Spleen found except one 1x1x3 strip, plus a 5x5x5 false positive touching the image border: the false positive
  // is larger, so a background click at its deepest voxel; the border counts as boundary.
  pred = gt;
  pred.at(2, 3, 4) = pred.at(2, 3, 5) = pred.at(2, 3, 6) = 0;
  fill_box(pred, {15, 15, 15}, {19, 19, 19}, 1);
  c = next_eval_click(pred, gt);
  ASSERT_TRUE(c.found);
  EXPECT_FALSE(c.spleen);
  EXPECT_EQ(c.region_voxels, 125);
  EXPECT_EQ(c.ijk, (std::array<int64_t, 3>{17, 17, 17}));
  EXPECT_EQ(c.depth, 3);
  // Without the false positive: the strip gets a spleen click (its first voxel of the maximal depth 1).
  fill_box(pred, {15, 15, 15}, {19, 19, 19}, 0);
  c = next_eval_click(pred, gt);
  ASSERT_TRUE(c.found);
  EXPECT_TRUE(c.spleen);
  EXPECT_EQ(c.region_voxels, 3);
  EXPECT_EQ(c.ijk, (std::array<int64_t, 3>{2, 3, 4}));
  // The same voxel is never clicked twice: with it excluded, the next deepest voxel of the strip.
  c = next_eval_click(pred, gt, 1, {{2, 3, 4}});
  ASSERT_TRUE(c.found);
  EXPECT_EQ(c.region_voxels, 2);
  EXPECT_EQ(c.ijk, (std::array<int64_t, 3>{2, 3, 5}));
  // Perfect prediction: no click.
  EXPECT_FALSE(next_eval_click(gt, gt).found);
}

TEST(Evaluator, EndToEndOnPhantoms) {
  const fs::path root = fs::temp_directory_path() / ("dex_test_eval_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "train");
  fs::create_directories(root / "eval");
  const std::string data = (root / "data").string();
  write_phantom_dataset(data, 5, 21);
  nlohmann::json j = load_config(std::string(DEX_SOURCE_DIR) + "/configs/train_small.json");
  j["dataset_dir"] = data;
  j["output_dir"] = (root / "train").string();
  j["spatial_size"] = {16, 16, 16};
  j["max_epochs"] = 1;
  j["steps_per_epoch"] = 2;
  j["progress"] = false;
  LocalCommunicator comm;
  {
    const TrainConfig tc = train_config_from_json(j, "eval test");
    Trainer t(tc, comm);
    t.run();
    std::ofstream((root / "train" / "config.json").string()) << train_config_to_json(tc).dump(2);  // as dex-train
  }
  EvalConfig cfg;
  cfg.model_path = (root / "train" / "model.safetensors").string();
  cfg.dataset_dir = data;
  cfg.output_dir = (root / "eval").string();
  cfg.num_val = 2;
  cfg.clicks = {0, 1, 3};
  cfg.progress = false;
  // The trainer's config.json beside the model sets the grid-metric target (train_small: majority).
  ASSERT_EQ(cfg.label_resize, LabelResize::Nearest);
  EXPECT_TRUE(apply_training_config_defaults(cfg));
  EXPECT_EQ(cfg.label_resize, LabelResize::Majority);
  EXPECT_DOUBLE_EQ(cfg.sigma, 3.0);
  const EvalResult r = evaluate(cfg);
  ASSERT_EQ(r.cases.size(), 2u);
  const auto items = list_training_items(data);
  for (const auto& c : r.cases) {
    ASSERT_EQ(c.dice_image.size(), 3u);
    ASSERT_EQ(c.mean_dice_grid.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_GE(c.dice_image[i], 0.0);
      EXPECT_LE(c.dice_image[i], 1.0);
      EXPECT_GE(c.mean_dice_grid[i], 0.0);
      EXPECT_LE(c.mean_dice_grid[i], 1.0);
    }
    // Every click is inside the image and on the side of the ground truth its label says.
    const LabelVolume gt = read_nifti_labels(c.label);
    EXPECT_LE(c.click_ijk.size(), 3u);
    for (size_t i = 0; i < c.click_ijk.size(); ++i) {
      const auto& p = c.click_ijk[i];
      for (int a = 0; a < 3; ++a) {
        EXPECT_GE(p[a], 0);
        EXPECT_LT(p[a], gt.shape[a]);
      }
      EXPECT_EQ(gt.at(p[0], p[1], p[2]) == 1, c.click_spleen[i]) << c.image << " click " << i;
      for (size_t k = 0; k < i; ++k) EXPECT_NE(c.click_ijk[k], p) << "click " << i << " repeats click " << k;
    }
  }
  // Deterministic: a second evaluation gives the same numbers and clicks.
  const EvalResult r2 = evaluate(cfg);
  for (size_t k = 0; k < r.cases.size(); ++k) {
    EXPECT_EQ(r.cases[k].dice_image, r2.cases[k].dice_image);
    EXPECT_EQ(r.cases[k].click_ijk, r2.cases[k].click_ijk);
  }
  write_eval_json(cfg.output_dir + "/eval.json", cfg, r);
  write_eval_csv(cfg.output_dir + "/eval.csv", r);
  EXPECT_GT(fs::file_size(cfg.output_dir + "/eval.json"), 100u);
  EXPECT_GT(fs::file_size(cfg.output_dir + "/eval.csv"), 50u);
  // A missing output folder is an error, not created silently.
  cfg.output_dir = (root / "missing").string();
  EXPECT_THROW(evaluate(cfg), InputError);
  fs::remove_all(root);
}

// dex-eval, the command: every wrong flag is a clear error (exit status 2, the reason, nothing written), checked
// before any model or data is read where the flag alone is wrong.
TEST(EvalCli, WrongFlagsAreClearErrors) {
  const fs::path root = fs::temp_directory_path() / ("dex_test_eval_cli_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "out");
  const std::string model = std::string(DEX_SOURCE_DIR) + "/tests/data/models/deepedit_phantom_small.safetensors";
  const std::string data = (root / "data").string();
  write_phantom_dataset(data, 3, 21);
  const std::string base = std::string(DEX_BINARY_DIR) + "/bin/dex-eval --quiet --model " + model + " --dataset-dir " +
                           data + " --output-dir " + (root / "out").string() + " --num-val 1";
  const std::string log = (root / "log.txt").string();
  const struct {
    std::string args, message;
  } cases[] = {
      {" --clicks 4294967297", "--clicks expects integers in [0, 1000]"},
      {" --clicks 0,x", "--clicks expects integers in [0, 1000]"},
      {" --clicks 3,1", "increasing"},
      {" --num-val -1", "--num-val expects an integer >= 0"},
      {" --max-cases x", "--max-cases expects an integer >= 0"},
      {" --num-val 3", "too few to hold out 3"},
      {" --label-resize cubic", "cubic"},
      {" --colour red", "colour"},
  };
  for (const auto& c : cases) {
    const dex::testing::CommandResult r = dex::testing::run_logged(base + c.args, log);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.log;
    EXPECT_NE(r.log.find(c.message), std::string::npos) << c.args << "\n" << r.log;
  }
  const std::string missing_model = std::string(DEX_BINARY_DIR) + "/bin/dex-eval --model /nonexistent.safetensors " +
                                    "--dataset-dir " + data + " --output-dir " + (root / "out").string();
  const dex::testing::CommandResult r = dex::testing::run_logged(missing_model, log);
  EXPECT_EQ(r.rc, 2) << r.log;
  EXPECT_TRUE(fs::is_empty(root / "out")) << "nothing written by a failed run";
  fs::remove_all(root);
}
