// dex-train: config handling, bitwise repeatability, kill/resume, corrupt checkpoints, convergence on phantoms, and
// data parallelism over MPI (2 ranks x batch 1 == 1 process x batch 2).
#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>


#include "data/click_simulation.h"
#include "data/orientation.h"
#include "data/phantom.h"
#include "data/resize.h"
#include "infer/cli_args.h"
#include "kernels/backend.h"
#include "layers/safetensors.h"
#include "tests/testing.h"
#include "train/communicator.h"
#include "train/label_resize.h"
#include "train/metrics.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace dex;

namespace {

std::string test_root() {
  static const std::string root = [] {
    fs::path p = fs::temp_directory_path() / ("dex_test_train_" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p.string();
  }();
  return root;
}

// 6 small phantoms (4 train + 2 validation), written once per test binary.
std::string phantom_dir(int count = 6, uint64_t seed = 11, PhantomView view = PhantomView::Abdomen) {
  const std::string dir = test_root() + "/phantoms_" + std::to_string(count) + "_" + std::to_string(seed) +
                          (view == PhantomView::Abdomen ? "" : std::string("_") + phantom_view_name(view));
  PhantomOptions opt;
  opt.view = view;
  if (!fs::exists(dir + "/dataset.json")) write_phantom_dataset(dir, count, seed, opt);
  return dir;
}

std::string fresh_dir(const std::string& name) {
  const std::string d = test_root() + "/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

nlohmann::json small_config() {
  return load_config(std::string(DEX_SOURCE_DIR) + "/configs/train_small.json");
}

// A tiny and fast variant of train_small for the mechanics tests: 16^3 grid, 2 steps per epoch.
TrainConfig tiny_config(const std::string& out) {
  nlohmann::json j = small_config();
  j["dataset_dir"] = phantom_dir();
  j["output_dir"] = out;
  j["spatial_size"] = {16, 16, 16};
  j["steps_per_epoch"] = 2;
  j["progress"] = false;
  return train_config_from_json(j, "tiny");
}

std::vector<float> weights(Trainer& t) {
  const ParameterSet& p = t.model().parameters();
  return std::vector<float>(p.values(), p.values() + p.numel());
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST(TrainConfig, SmallAndFullConfigsParse) {
  const TrainConfig s = train_config_from_json(small_config(), "train_small.json");
  EXPECT_EQ(s.arch.filters, (std::vector<int>{8, 16, 32, 64}));
  EXPECT_EQ(s.arch.in_channels, 3);
  EXPECT_EQ(s.arch.out_channels, 2);
  ASSERT_EQ(s.label_names.size(), 2u);
  EXPECT_EQ(s.label_names[0].name, "spleen");  // the bundle's order, although JSON objects are unordered here
  EXPECT_EQ(s.label_names[1].name, "background");
  EXPECT_EQ(s.label_resize, LabelResize::Majority);  // issue 7: nearest targets are aliased on 32^3
  EXPECT_DOUBLE_EQ(s.guidance_sigma, 3.0);
  const TrainConfig f =
      train_config_from_json(load_config(std::string(DEX_SOURCE_DIR) + "/configs/train.json"), "train.json");
  EXPECT_EQ(f.arch.filters, (std::vector<int>{32, 64, 128, 256, 320, 320}));
  EXPECT_EQ(f.spatial_size, (std::array<int64_t, 3>{128, 128, 128}));
  EXPECT_EQ(f.max_epochs, 500);
  EXPECT_DOUBLE_EQ(f.learning_rate, 1e-4);
  EXPECT_DOUBLE_EQ(f.deepgrow_probability_train, 0.4);
  EXPECT_DOUBLE_EQ(f.deepgrow_probability_val, 1.0);
  EXPECT_EQ(f.num_val, 9);
  EXPECT_EQ(f.seed, 123u);
  EXPECT_EQ(f.label_resize, LabelResize::Nearest);  // the bundle
}

TEST(TrainConfig, OverridesAndBadValuesAreClearErrors) {
  nlohmann::json j = small_config();
  apply_overrides(j, {{"max_epochs", "7"}, {"spatial_size", "[64,64,64]"}}, true, "cfg");
  const TrainConfig c = train_config_from_json(j, "cfg");
  EXPECT_EQ(c.max_epochs, 7);
  EXPECT_EQ(c.spatial_size[2], 64);
  auto expect_error = [](nlohmann::json bad, const std::string& needle) {
    try {
      train_config_from_json(bad, "cfg.json");
      ADD_FAILURE() << "no error for " << bad.dump();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    }
  };
  nlohmann::json b = small_config();
  b["max_epoch"] = 3;  // typo
  expect_error(b, "max_epoch");
  b = small_config();
  b["learning_rate"] = "fast";
  expect_error(b, "learning_rate");
  b = small_config();
  b["max_epochs"] = -1;
  expect_error(b, "max_epochs");
  b = small_config();
  b["spatial_size"] = {36, 32, 32};  // not a multiple of the total stride 8
  expect_error(b, "spatial_size");
  b = small_config();
  b["filters"] = {8, 16, 32};  // 3 filters for 4 levels
  expect_error(b, "filters");
}

// Every key of both shipped configs, set to each of a set of wrong (or odd) values, either parses or is an InputError
// that names the key and the file: never another exception (a JSON type error that escaped) or a crash.
TEST(TrainConfig, EveryKeyWithAWrongValueIsAClearErrorNamingIt) {
  const std::vector<nlohmann::json> values = {nullptr, "x", -1, 0, 1e30, -1e30, 0.5, true, nlohmann::json::array(),
                                              nlohmann::json::object(), nlohmann::json::array({1e9, 1e9, 1e9}),
                                              nlohmann::json::array({"a", "b", "c"}), std::numeric_limits<int64_t>::max(),
                                              int64_t(4294967304), nlohmann::json::array({int64_t(4294967304), 32, 32}),
                                              std::numeric_limits<uint64_t>::max()};
  int checked = 0, errors = 0;
  for (const char* file : {"train.json", "train_small.json"}) {
    const nlohmann::json base = load_config(std::string(DEX_SOURCE_DIR) + "/configs/" + file);
    for (auto it = base.begin(); it != base.end(); ++it) {
      if (it.key() == "comment") continue;
      for (const auto& v : values) {
        nlohmann::json j = base;
        j[it.key()] = v;
        ++checked;
        try {
          train_config_from_json(j, "cfg.json");
        } catch (const InputError& e) {
          ++errors;
          EXPECT_NE(std::string(e.what()).find(it.key()), std::string::npos) << e.what();
          EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
        } catch (const std::exception& e) {
          ADD_FAILURE() << file << ": " << it.key() << " = " << v.dump() << ": not an InputError: " << e.what();
        }
      }
    }
  }
  EXPECT_GT(checked, 300);
  EXPECT_GT(errors, checked / 2);
  // Values that would be truncated to int (2^32 + 8 -> 8) or overflow later are errors, not silently changed.
  for (const auto& [key, v] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"spatial_size", nlohmann::json::array({int64_t(4294967304), 32, 32})},
           {"spatial_size", 2048},
           {"filters", nlohmann::json::array({8, int64_t(4294967304), 32, 64})},
           {"batch_size", std::numeric_limits<int64_t>::max()},
           {"max_interactions", int64_t(4294967297)},
           {"num_workers", int64_t(4294967297)}}) {
    nlohmann::json j = small_config();
    j[key] = v;
    EXPECT_THROW(train_config_from_json(j, "cfg.json"), InputError) << key << " = " << v.dump();
  }
}

TEST(Metrics, DiceAndBundleMean) {
  const uint8_t gt[8] = {0, 0, 1, 1, 1, 0, 0, 0};
  const uint8_t pr[8] = {0, 1, 1, 1, 0, 0, 0, 0};
  EXPECT_DOUBLE_EQ(dice_score(pr, gt, 8, 1), 2.0 * 2 / (3 + 3));
  EXPECT_DOUBLE_EQ(dice_score(pr, gt, 8, 0), 2.0 * 4 / (5 + 5));
  EXPECT_DOUBLE_EQ(bundle_mean_dice(pr, gt, 8), (4.0 / 6 + 8.0 / 10) / 2);
  const uint8_t empty[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_TRUE(std::isnan(dice_score(pr, empty, 8, 1)));        // ignore_empty
  EXPECT_DOUBLE_EQ(bundle_mean_dice(pr, empty, 8), 2.0 * 5 / 13);  // only background counts
}

// Issue 7, suspect (3): the target label on the network grid. The bundle's nearest resize takes each grid voxel's
// label from the FIRST file voxel of its window; "majority" takes the window's most frequent value, the same window
// resize_area averages the image over.
TEST(LabelResize, MajorityUsesTheAreaWindowNearestItsFirstVoxel) {
  LabelVolume v;
  v.shape = {6, 3, 3};
  v.data.assign(54, 0);
  // Window of grid voxel 0 on axis 0 (6 -> 2): file rows 0..2. Row 0 is background, rows 1 and 2 spleen.
  for (int64_t i = 1; i < 6; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 3; ++k) v.at(i, j, k) = 1;
  const Shape3 out{2, 1, 1};
  const LabelVolume nn = resize_label(v, out, LabelResize::Nearest);
  const LabelVolume mj = resize_label(v, out, LabelResize::Majority);
  EXPECT_EQ(nn.data, (std::vector<uint8_t>{0, 1}));  // row 0 alone decides
  EXPECT_EQ(mj.data, (std::vector<uint8_t>{1, 1}));  // 18 of 27 voxels are spleen
  // Ties go to the smaller value; the affine is resize_area's.
  v.data.assign(54, 0);
  for (int64_t i = 3; i < 6; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 3; ++k) v.at(i, j, k) = 1;
  const LabelVolume t = resize_label(v, {1, 1, 1}, LabelResize::Majority);
  EXPECT_EQ(t.data, (std::vector<uint8_t>{0}));
  EXPECT_EQ(t.affine, resize_affine(v.affine, v.shape, {1, 1, 1}));
  EXPECT_EQ(parse_label_resize("majority", "cfg"), LabelResize::Majority);
  EXPECT_THROW(parse_label_resize("area", "cfg"), InputError);
}

// On the phantoms at 32^3 the nearest target is not what the image shows: even the exact spleen fraction of each
// window, thresholded at 0.5, matches it only to Dice ~0.75 (measured 0.71-0.78 per case), while it is the majority
// target by construction. This is why train_small (32^3) uses "majority".
TEST(LabelResize, NearestTargetIsAliasedOnSmallGrids) {
  double nearest_sum = 0;
  const int n = 4;
  for (int i = 0; i < n; ++i) {
    const Phantom p = make_phantom(7, i);
    const LabelVolume lab = reorient(p.label, ras_orientation(p.label.affine));
    const Shape3 ss{32, 32, 32};
    Volume frac;
    frac.shape = lab.shape;
    frac.affine = lab.affine;
    frac.data.assign(lab.data.begin(), lab.data.end());
    frac = resize_area(frac, ss);
    std::vector<uint8_t> half(frac.data.size());
    for (size_t v = 0; v < half.size(); ++v) half[v] = frac.data[v] > 0.5f;
    const LabelVolume nn = resize_label(lab, ss, LabelResize::Nearest);
    const LabelVolume mj = resize_label(lab, ss, LabelResize::Majority);
    nearest_sum += dice_score(half.data(), nn.data.data(), nn.size(), 1);
    EXPECT_DOUBLE_EQ(dice_score(half.data(), mj.data.data(), mj.size(), 1), 1.0);  // no exact 0.5 ties here
  }
  EXPECT_LT(nearest_sum / n, 0.85);
}

// Issue 7, suspect (1): the training clicks' heatmaps peak on the voxel the click names, and that voxel is spleen
// (spleen channel) on the network grid: [d, i, j, k] with only i, j, k placing it, (i, j, k) in the label's C order.
TEST(TrainClicks, InitialSpleenSeedHeatmapPeaksOnTheSpleen) {
  for (int i = 0; i < 4; ++i) {
    const Phantom p = make_phantom(7, i);
    const LabelVolume lab =
        resize_label(reorient(p.label, ras_orientation(p.label.affine)), {32, 32, 32}, LabelResize::Majority);
    Rng rng = click_rng(123, 0, static_cast<uint64_t>(i));
    const Guidance g = initial_guidance(lab, bundle_label_names(), rng);
    ASSERT_FALSE(g[0].empty());
    const SimClick c = g[0][0];
    ASSERT_GE(c[0], 1) << "the spleen seed is inside the spleen: positive depth";
    EXPECT_EQ(lab.at(c[1], c[2], c[3]), 1);
    Guidance only_first{{c}, {}};
    const auto maps = guidance_heatmaps(only_first, lab.shape);
    const int64_t peak = std::max_element(maps[0].begin(), maps[0].end()) - maps[0].begin();
    EXPECT_EQ(peak, lab.index(c[1], c[2], c[3]));
    EXPECT_EQ(lab.data[static_cast<size_t>(peak)], 1);
    EXPECT_EQ(*std::max_element(maps[1].begin(), maps[1].end()), 0.f);  // no background click: channel all zero
  }
}

TEST(Trainer, SameSeedIsBitwiseRepeatable) {
  LocalCommunicator comm;
  std::vector<float> w[2];
  std::vector<EpochRecord> rec[2];
  for (int r = 0; r < 2; ++r) {
    TrainConfig c = tiny_config(fresh_dir("repeat" + std::to_string(r)));
    c.max_epochs = 2;
    Trainer t(c, comm);
    rec[r] = t.run();
    w[r] = weights(t);
  }
  ASSERT_EQ(rec[0].size(), 2u);
  EXPECT_TRUE(bitwise_equal(w[0], w[1]));
  for (int e = 0; e < 2; ++e) {
    EXPECT_EQ(rec[0][e].train_loss, rec[1][e].train_loss);
    EXPECT_EQ(rec[0][e].val_mean_dice, rec[1][e].val_mean_dice);
  }
  // A different seed gives different weights (the comparison above can fail).
  TrainConfig c = tiny_config(fresh_dir("repeat_other"));
  c.max_epochs = 2;
  c.seed = 124;
  Trainer t(c, comm);
  t.run();
  EXPECT_FALSE(bitwise_equal(w[0], weights(t)));
}

// The per-step time split (epoch line, metrics.jsonl): the click round's no-grad forwards are counted only where a
// round runs one: none at deepgrow probability 0 (every round only zeroes the click channels, done on the loader
// thread), at least one per step at probability 1; they are part of the click round's time.
TEST(Trainer, ClickForwardTimeCountsOnlyTheRoundsThatRunAForward) {
  LocalCommunicator comm;
  for (double p : {0.0, 1.0}) {
    const std::string dir = fresh_dir("click_split_" + std::to_string(int(p)));
    TrainConfig c = tiny_config(dir);
    c.max_epochs = 1;
    c.deepgrow_probability_train = p;
    Trainer t(c, comm);
    const auto rec = t.run();
    ASSERT_EQ(rec.size(), 1u);
    const EpochRecord& r = rec[0];
    EXPECT_GT(r.steps, 0);
    EXPECT_GE(r.data_s, 0);
    EXPECT_GT(r.step_s, 0);
    EXPECT_GE(r.clicks_s, r.click_forward_s) << "p " << p;
    if (p == 0) EXPECT_EQ(r.click_forward_s, 0) << "no forward at probability 0";
    else EXPECT_GT(r.click_forward_s, 0) << "a forward per step at probability 1";
    const auto log = read_metrics_jsonl(dir + "/metrics.jsonl");
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].click_forward_s, r.click_forward_s);
    EXPECT_EQ(log[0].clicks_s, r.clicks_s);
  }
}

TEST(Trainer, ResumeEqualsUninterruptedRun) {
  LocalCommunicator comm;
  const std::string full_dir = fresh_dir("resume_full"), cut_dir = fresh_dir("resume_cut");
  TrainConfig c = tiny_config(full_dir);
  c.max_epochs = 3;
  std::vector<float> full;
  {
    Trainer t(c, comm);
    t.run();
    full = weights(t);
  }
  // "Kill" after epoch 2: a run that stops there (the state is written after every epoch) ...
  c.output_dir = cut_dir;
  {
    Trainer t(c, comm);
    t.on_epoch_end = [](const EpochRecord& r) {
      if (r.epoch == 2) throw std::runtime_error("killed");
    };
    EXPECT_THROW(t.run(), std::runtime_error);
  }
  // ... and a new process that resumes from it.
  Trainer t(c, comm);
  t.resume();
  EXPECT_EQ(t.next_epoch(), 2);
  const auto rest = t.run();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].epoch, 3);
  EXPECT_TRUE(bitwise_equal(full, weights(t)));
  // The log has every epoch once, and the best model is where it should be.
  const auto log = read_metrics_jsonl(cut_dir + "/metrics.jsonl");
  ASSERT_EQ(log.size(), 3u);
  for (int e = 0; e < 3; ++e) EXPECT_EQ(log[e].epoch, e + 1);
  EXPECT_TRUE(fs::exists(cut_dir + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(cut_dir + "/curve.png"));
  const auto full_log = read_metrics_jsonl(full_dir + "/metrics.jsonl");
  ASSERT_EQ(full_log.size(), 3u);
  for (int e = 0; e < 3; ++e) EXPECT_EQ(full_log[e].train_loss, log[e].train_loss) << "epoch " << e + 1;
}

TEST(Trainer, CorruptOrMissingCheckpointIsAClearError) {
  LocalCommunicator comm;
  const std::string dir = fresh_dir("corrupt");
  TrainConfig c = tiny_config(dir);
  c.max_epochs = 1;
  Trainer t(c, comm);
  EXPECT_THROW(
      {
        try {
          t.resume();
        } catch (const InputError& e) {
          EXPECT_NE(std::string(e.what()).find("state_latest.safetensors"), std::string::npos) << e.what();
          throw;
        }
      },
      InputError);
  t.run();
  const std::string state = t.state_path();
  const auto size = fs::file_size(state);
  fs::resize_file(state, size / 2);  // truncated
  try {
    t.resume();
    ADD_FAILURE() << "no error for a truncated state";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(state), std::string::npos) << e.what();
  }
  {
    std::ofstream f(state, std::ios::binary | std::ios::trunc);
    f << "this is not a checkpoint";
  }
  try {
    t.resume();
    ADD_FAILURE() << "no error for a garbage state";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(state), std::string::npos) << e.what();
  }
  // A good state of another architecture (8-16-32-64) for a 4-8-16-32 network.
  TrainConfig good = tiny_config(fresh_dir("corrupt_good"));
  good.max_epochs = 1;
  Trainer t1(good, comm);
  t1.run();
  TrainConfig other = tiny_config(fresh_dir("corrupt_other"));
  other.arch.filters = {4, 8, 16, 32};
  Trainer t2(other, comm);
  try {
    t2.resume(t1.state_path());
    ADD_FAILURE() << "no error for a state of another architecture";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(t1.state_path()), std::string::npos) << e.what();
  }
}

namespace {
int run_command(const std::string& cmd) {
  std::fprintf(stderr, "+ %s\n", cmd.c_str());
  return std::system(cmd.c_str());
}
StateDict read_state(const std::string& path) { return load_safetensors(path); }
}  // namespace

// Data parallel: mpirun -np 2 with batch 1 per rank must give the weights of one process with batch 2. The samples,
// augmentations and clicks are pure functions of (seed, epoch, case), so both runs see the same data; the only
// difference is where the batch's gradients are summed (inside the conv weight-gradient GEMM for batch 2, by the
// all-reduce for 2 ranks), i.e. float rounding of the order of a sum, amplified by Adam's division by sqrt(v).
TEST(TrainerMpi, TwoRanksEqualOneProcessWithTheSameGlobalBatch) {
  const std::string bin = std::string(DEX_BINARY_DIR) + "/bin/dex-train";
  ASSERT_TRUE(fs::exists(bin)) << bin << " is not built";
  ASSERT_EQ(run_command("command -v mpirun > /dev/null"), 0) << "mpirun (OpenMPI) is not installed";
  const std::string one = fresh_dir("mpi_one"), two = fresh_dir("mpi_two");
  const std::string common = bin + " --config " + std::string(DEX_SOURCE_DIR) + "/configs/train_small.json" +
                             " --dataset-dir " + phantom_dir() +
                             " --spatial-size [16,16,16] --max-epochs 2 --num-val 2 --progress false";
  const std::string env = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive ";
  ASSERT_EQ(run_command(env + common + " --batch-size 2 --communicator local --output-dir " + one), 0);
  ASSERT_EQ(run_command(env + "mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS -x "
                              "OPENBLAS_NUM_THREADS -x OMP_WAIT_POLICY " +
                        common + " --batch-size 1 --communicator mpi --output-dir " + two),
            0);
  const StateDict a = read_state(one + "/state_latest.safetensors");
  const StateDict b = read_state(two + "/state_latest.safetensors");
  ASSERT_EQ(a.size(), b.size());
  // The initial weights (the same seed initialises both runs) measure how far training moved them.
  nlohmann::json j = small_config();
  j["dataset_dir"] = phantom_dir();
  j["output_dir"] = fresh_dir("mpi_init");
  j["spatial_size"] = {16, 16, 16};
  LocalCommunicator comm;
  Trainer init(train_config_from_json(j, "init"), comm);
  const StateDict w0 = init.model().state_dict();
  // Relative L2 differences: weights against the distance they moved; Adam's moments (which, unlike Adam's update,
  // are linear in the gradient, so a missing 1/world_size would show as a factor 2) against their norm.
  auto rel = [&](const std::string& prefix, bool vs_init) {
    double d2 = 0, n2 = 0;
    for (const auto& [name, ta] : a) {
      // "": every weight; otherwise exactly the named optimizer tensor.
      const bool is_opt = name.rfind("optimizer.", 0) == 0;
      if (prefix.empty() ? is_opt : name != prefix) continue;
      const auto& tb = b.at(name);
      const std::vector<float>* ref = vs_init ? &w0.at(name).data : nullptr;
      for (size_t i = 0; i < ta.data.size(); ++i) {
        const double d = double(ta.data[i]) - double(tb.data[i]);
        const double m = ref ? double(ta.data[i]) - double((*ref)[i]) : double(ta.data[i]);
        d2 += d * d;
        n2 += m * m;
      }
    }
    return std::sqrt(d2 / n2);
  };
  const double rw = rel("", true), rm = rel("optimizer.exp_avg", false), rv = rel("optimizer.exp_avg_sq", false);
  std::fprintf(stderr, "2 ranks vs 1 process: |dw|/|w-w0| = %.3g, |dm|/|m| = %.3g, |dv|/|v| = %.3g\n", rw, rm, rv);
  // 4 Adam steps. Gradients differ only by summation order (relative ~1e-6 in fp32 over these reductions); Adam's
  // first steps are nearly lr * sign(g), so components with |g| near rounding level may flip and move by up to
  // 2 lr: that, not the gradient error, dominates the weight difference. Bounds: weights 1e-2 of their movement,
  // moments 1e-3. Measured (log line above): 1.6e-3 / 2.5e-4 / 4e-6 with lr 1e-3, 5.2e-5 / 2.1e-6 / 7.5e-7 with the
  // config's lr 3e-3. Averaging bugs are caught by the moments: summing instead of averaging doubles m (0.5 here).
  EXPECT_LE(rw, 1e-2);
  EXPECT_LE(rm, 1e-3);
  EXPECT_LE(rv, 1e-3);
  // Both runs are real training runs: the weights moved from their (identical) initialisation.
  const auto ma = read_metrics_jsonl(one + "/metrics.jsonl"), mb = read_metrics_jsonl(two + "/metrics.jsonl");
  ASSERT_EQ(ma.size(), 2u);
  ASSERT_EQ(mb.size(), 2u);
  EXPECT_NEAR(ma[1].train_loss, mb[1].train_loss, 1e-4);
}

namespace {
std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
}  // namespace

// Gradient buckets (train/grad_buckets.h): 2 ranks with many small buckets, each all-reduced (MPI_Iallreduce) as soon
// as the backward has finished its gradients, must give the same weights as 2 ranks with one bucket holding every
// gradient. Tolerance: none, bit for bit. Each element is reduced exactly once either way, and with 2 ranks its sum
// is a single addition a + b, which IEEE arithmetic makes independent of the operand order and of how MPI splits or
// pipelines the message; the 1/2 scaling is exact. Any element reduced twice, missed, or reduced before its gradient
// was final shows as a difference.
TEST(TrainerMpi, SmallBucketsGiveTheWeightsOfOneBucket) {
  const std::string bin = std::string(DEX_BINARY_DIR) + "/bin/dex-train";
  ASSERT_TRUE(fs::exists(bin)) << bin << " is not built";
  ASSERT_EQ(run_command("command -v mpirun > /dev/null"), 0) << "mpirun (OpenMPI) is not installed";
  const std::string many = fresh_dir("mpi_buckets_many"), one = fresh_dir("mpi_buckets_one");
  const std::string mpirun = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive mpirun "
                             "--allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS "
                             "-x OMP_WAIT_POLICY " + bin + " --config " + std::string(DEX_SOURCE_DIR) +
                             "/configs/train_small.json --dataset-dir " + phantom_dir() +
                             " --spatial-size [16,16,16] --max-epochs 1 --num-val 2 --progress false"
                             " --batch-size 1 --communicator mpi";
  ASSERT_EQ(run_command(mpirun + " --bucket-mb 0.05 --output-dir " + many + " 2> " + many + "/log.txt"), 0)
      << read_text(many + "/log.txt");
  ASSERT_EQ(run_command(mpirun + " --bucket-mb 1000 --output-dir " + one + " 2> " + one + "/log.txt"), 0)
      << read_text(one + "/log.txt");
  // The runs really used several buckets and one (the trainer's start-up line).
  auto buckets = [](const std::string& log) {
    const size_t at = log.find("gradient bucket(s)");
    if (at == std::string::npos) return -1;
    size_t b = log.rfind(", ", at);
    return b == std::string::npos ? -1 : std::atoi(log.c_str() + b + 2);
  };
  const int nm = buckets(read_text(many + "/log.txt")), n1 = buckets(read_text(one + "/log.txt"));
  std::fprintf(stderr, "buckets: %d (0.05 MiB) vs %d (1000 MiB)\n", nm, n1);
  EXPECT_GE(nm, 5) << read_text(many + "/log.txt");
  EXPECT_EQ(n1, 1) << read_text(one + "/log.txt");
  const StateDict a = read_state(many + "/state_latest.safetensors");
  const StateDict b = read_state(one + "/state_latest.safetensors");
  ASSERT_EQ(a.size(), b.size());
  size_t compared = 0;
  for (const auto& [name, ta] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    const auto& tb = b.at(name);
    ASSERT_EQ(ta.data.size(), tb.data.size()) << name;
    EXPECT_EQ(std::memcmp(ta.data.data(), tb.data.data(), ta.data.size() * sizeof(float)), 0) << name;
    compared += ta.data.size();
  }
  EXPECT_GT(compared, 0u);
}

// NCCL (train/communicator_nccl.cpp): asking for it where it cannot work is a clear error (exit status 2) on any
// build; the data-parallel run itself needs 2 CUDA devices and skips here otherwise.
TEST(TrainerNccl, NcclWithoutCudaOrMpirunIsAClearError) {
  const std::string bin = std::string(DEX_BINARY_DIR) + "/bin/dex-train";
  ASSERT_TRUE(fs::exists(bin)) << bin << " is not built";
  const std::string out = fresh_dir("nccl_errors");
  const std::string cmd = bin + " --config " + std::string(DEX_SOURCE_DIR) + "/configs/train_small.json" +
                          " --dataset-dir " + phantom_dir() + " --max-epochs 1 --progress false --communicator nccl" +
                          " --output-dir " + out;
  // On the CPU: NCCL reduces device buffers.
  int rc = run_command(cmd + " --device cpu 2> " + out + "/cpu.txt");
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  const std::string cpu = read_text(out + "/cpu.txt");
  EXPECT_NE(cpu.find("communicator 'nccl'"), std::string::npos) << cpu;
  EXPECT_NE(cpu.find("--device cuda"), std::string::npos) << cpu;
  // On CUDA without mpirun (or in a build without NCCL): the message says what is missing, before any CUDA work.
  rc = run_command(cmd + " --device cuda 2> " + out + "/cuda.txt");
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  const std::string cuda = read_text(out + "/cuda.txt");
  EXPECT_TRUE(cuda.find("mpirun") != std::string::npos || cuda.find("has no NCCL") != std::string::npos) << cuda;
  // An unknown communicator names the choices.
  rc = run_command(cmd + " --communicator gloo 2> " + out + "/kind.txt");
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  EXPECT_NE(read_text(out + "/kind.txt").find("auto, local, mpi, nccl"), std::string::npos);
}

// 2 ranks on 2 GPUs over NCCL (buckets on device memory, reduced on the communication stream while the backward
// runs) against the same 2 ranks over MPI through the host. Needs a CUDA build with NCCL and 2 devices.
TEST(TrainerNccl, TwoGpuRanksMatchMpiRanks) {
  std::string why;
  if (!backend_available(Device::CUDA, &why)) GTEST_SKIP() << "no CUDA device: " << why;
  int devices = 0;
  {
    FILE* p = popen("nvidia-smi -L 2> /dev/null | wc -l", "r");
    if (p && std::fscanf(p, "%d", &devices) != 1) devices = 0;
    if (p) pclose(p);
  }
  if (devices < 2) GTEST_SKIP() << "NCCL data parallel needs 2 CUDA devices, this machine has " << devices;
  const std::string bin = std::string(DEX_BINARY_DIR) + "/bin/dex-train";
  ASSERT_EQ(run_command("command -v mpirun > /dev/null"), 0) << "mpirun (OpenMPI) is not installed";
  const std::string nccl = fresh_dir("nccl_two"), host = fresh_dir("nccl_host");
  const std::string mpirun = "mpirun --allow-run-as-root --oversubscribe -np 2 " + bin + " --config " +
                             std::string(DEX_SOURCE_DIR) + "/configs/train_small.json --dataset-dir " + phantom_dir() +
                             " --spatial-size [16,16,16] --max-epochs 1 --num-val 2 --progress false --batch-size 1"
                             " --device cuda --amp false --bucket-mb 0.05";
  ASSERT_EQ(run_command(mpirun + " --communicator nccl --output-dir " + nccl + " 2> " + nccl + "/log.txt"), 0)
      << read_text(nccl + "/log.txt");
  ASSERT_EQ(run_command(mpirun + " --communicator mpi --output-dir " + host), 0);
  EXPECT_NE(read_text(nccl + "/log.txt").find("(nccl)"), std::string::npos) << read_text(nccl + "/log.txt");
  // Both sum the same two fp32 values per element (a + b, order-free) and scale by 1/2 exactly: bit for bit, unless
  // the device's kernels differ between the two runs (they are the same binary, device and inputs).
  const StateDict a = read_state(nccl + "/state_latest.safetensors");
  const StateDict b = read_state(host + "/state_latest.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, ta] : a) {
    const auto& tb = b.at(name);
    ASSERT_EQ(ta.data.size(), tb.data.size()) << name;
    EXPECT_EQ(std::memcmp(ta.data.data(), tb.data.data(), ta.data.size() * sizeof(float)), 0) << name;
  }
}

// The same run with the same seed is bitwise repeatable: its first epoch again, in a new Trainer (new caches, new
// output folder), gives the same weights, loss and validation Dice bit for bit as `first` and `after_epoch1` of the
// full run. (Trainer.SameSeedIsBitwiseRepeatable checks the same on 16^3 and that another seed differs.)
void expect_first_epoch_repeats(const TrainConfig& c, Communicator& comm, const std::vector<float>& after_epoch1,
                                const EpochRecord& first, const std::string& out) {
  ASSERT_FALSE(after_epoch1.empty());
  TrainConfig c1 = c;
  c1.max_epochs = 1;
  c1.output_dir = fresh_dir(out);
  Trainer t1(c1, comm);
  const auto rec1 = t1.run();
  ASSERT_EQ(rec1.size(), 1u);
  EXPECT_TRUE(bitwise_equal(after_epoch1, weights(t1)));
  EXPECT_EQ(rec1[0].train_loss, first.train_loss);
  EXPECT_EQ(rec1[0].val_spleen_dice, first.val_spleen_dice);
  EXPECT_EQ(rec1[0].val_mean_dice, first.val_mean_dice);
}

// One convergence run of train_small with the overrides in `j` on one thread (so the trajectory, and with it the
// asserted Dice, does not depend on the machine's core count), then its first epoch again, which must repeat bit for
// bit (expect_first_epoch_repeats).
struct ConvergenceRun {
  std::vector<EpochRecord> records;
  double best_spleen = 0, best_mean = 0, seconds = 0;
  int best_epoch = 0;
};
ConvergenceRun run_convergence(nlohmann::json j, const std::string& out) {
  omp_set_num_threads(1);
  openblas_set_num_threads(1);
  LocalCommunicator comm;
  j["output_dir"] = fresh_dir(out);
  j["progress"] = false;
  const TrainConfig c = train_config_from_json(j, "train_small");
  Trainer t(c, comm);
  std::vector<float> after_epoch1;
  t.on_epoch_end = [&](const EpochRecord& r) {
    if (r.epoch == 1) after_epoch1 = weights(t);
  };
  ConvergenceRun run;
  const auto t0 = std::chrono::steady_clock::now();
  run.records = t.run();
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(run.records.size(), static_cast<size_t>(c.max_epochs));
  for (const auto& r : run.records)
    if (r.val_spleen_dice > run.best_spleen) {
      run.best_spleen = r.val_spleen_dice;
      run.best_epoch = static_cast<int>(r.epoch);
    }
  run.best_mean = t.best_metric();
  EXPECT_TRUE(fs::exists(t.model_path()));
  if (!run.records.empty()) {
    std::fprintf(stderr,
                 "%s: first loss %.4f, last loss %.4f, best val spleen Dice %.4f (epoch %d), best val mean Dice "
                 "%.4f, %.0f s\n",
                 out.c_str(), run.records.front().train_loss, run.records.back().train_loss, run.best_spleen,
                 run.best_epoch, run.best_mean, run.seconds);
    expect_first_epoch_repeats(c, comm, after_epoch1, run.records[0], out + "_repeat");
  }
  return run;
}

// Convergence of train_small on CPU phantoms of the whole abdomen (the demo's data), and bitwise repeatability of that
// run. On this view the spleen has only 74-157 voxels on the 32^3 grid, mostly boundary, and no configuration of
// train_small's free knobs measured so far passes ~0.83 (configs/train_small.json's "comment"); the 0.9 is
// asserted on the spleen view (next test). Here: the best validation spleen Dice >= 0.6 (measured 0.708 with this
// exact setup: 48 phantoms seed 7 = 40 train + 8 validation, 1 thread, 152 s on a quiet machine) and the training
// loss below 30% of its first-epoch value (measured 1.392 -> 0.333). Where the 32^3 error is: boundary voxels (73-99%
// of the wrong voxels within one grid voxel, ~10 mm, of the spleen boundary), one connected prediction per case,
// training cases no better than validation ones.
TEST(TrainerConvergence, SmallConfigLearnsPhantomSpleens) {
  nlohmann::json j = small_config();
  j["dataset_dir"] = phantom_dir(48, 7);
  j["num_val"] = 8;
  const ConvergenceRun run = run_convergence(j, "converge");
  ASSERT_FALSE(run.records.empty());
  EXPECT_GE(run.best_spleen, 0.6);
  EXPECT_LT(run.records.back().train_loss, 0.3 * run.records.front().train_loss);
}

// The bar: a validation spleen Dice >= 0.9 in a few minutes on this CPU. Reached on the spleen view of the
// phantoms (data/phantom.h: a box around the spleen, 120-150 mm per axis or more where the spleen needs it, so the
// spleen has ~1000-3000 voxels on the 32^3 grid, the order of a real spleen on the bundle's 128^3 grid) with more
// cases and fewer epochs than the test above: 96
// phantoms seed 7 = 80 train + 16 validation, train_small with max_epochs 15 and the learning rate /10 after epoch
// 10, 1 thread. Measured 2026-11-27: best 0.921 (epoch 14; 0.746 after epoch 1) in 2 min 34 s. With 40 training
// cases the same 1200 steps reach 0.906 (train Dice 0.96: the gap is generalisation, so more cases, not more epochs).
TEST(TrainerConvergence, SmallConfigReachesDice09OnSpleenViewPhantoms) {
  nlohmann::json j = small_config();
  j["dataset_dir"] = phantom_dir(96, 7, PhantomView::Spleen);
  j["num_val"] = 16;
  j["max_epochs"] = 15;
  j["lr_step_size"] = 10;
  const ConvergenceRun run = run_convergence(j, "converge_spleen_view");
  ASSERT_FALSE(run.records.empty());
  EXPECT_GE(run.best_spleen, 0.9);
  EXPECT_LT(run.records.back().train_loss, 0.2 * run.records.front().train_loss);
}
