// Data pipeline stages (read, orient, window, resize, heatmaps + network input, invert, write) on the real CT
// (shared/data/real-ct, 122x101x112) and on a synthetic 512x512x100 int16 .nii.gz (generated once into /tmp).
//   build-*/bench/dex_bench_cpu --benchmark_filter=Data
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "data/click_guidance.h"
#include "data/click_simulation.h"
#include "data/clicks.h"
#include "data/intensity.h"
#include "data/nifti_io.h"
#include "data/orientation.h"
#include "data/phantom.h"
#include "data/preprocess.h"
#include "data/resize.h"
#include "kernels/rng.h"

namespace dex {
namespace {

std::string real_path() { return std::string(DEX_SOURCE_DIR) + "/../shared/data/real-ct/imagesTr/case_a.nii.gz"; }

// A CT-like int16 volume: air outside an elliptic body, soft tissue with noise inside, an LPS-style affine.
std::string synthetic_path() {
  static const std::string p = [] {
    const std::string path = "/tmp/dex_bench_synth_512x512x100.nii.gz";
    if (std::filesystem::exists(path)) return path;
    Volume v;
    v.shape = {512, 512, 100};
    v.affine[0][0] = -0.7;
    v.affine[1][1] = -0.7;
    v.affine[2][2] = 2.5;
    v.data.resize(static_cast<size_t>(v.size()));
    for (int64_t i = 0; i < 512; ++i)
      for (int64_t j = 0; j < 512; ++j)
        for (int64_t k = 0; k < 100; ++k) {
          const double x = (i - 256) / 220.0, y = (j - 256) / 160.0;
          const int64_t idx = v.index(i, j, k);
          const float noise = static_cast<float>(rng_u32(7, 0, static_cast<uint64_t>(idx)) % 41) - 20.f;
          v.data[idx] = x * x + y * y < 1 ? 40.f + noise : -1000.f;
        }
    write_nifti(path, v, NiftiDType::I16);
    return path;
  }();
  return p;
}

std::string path_of(int64_t which) { return which == 0 ? real_path() : synthetic_path(); }

const Volume& file_volume(int64_t which) {
  static std::map<int64_t, Volume> cache;
  auto it = cache.find(which);
  if (it == cache.end()) it = cache.emplace(which, read_nifti(path_of(which))).first;
  return it->second;
}

void label(benchmark::State& state) {
  const auto& v = file_volume(state.range(0));
  state.SetLabel(str(state.range(0) == 0 ? "real " : "synthetic ", v.shape[0], "x", v.shape[1], "x", v.shape[2]));
}

void BM_DataRead(benchmark::State& state) {
  const std::string p = path_of(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(read_nifti(p));
  label(state);
}

void BM_DataOrient(benchmark::State& state) {
  const Volume& v = file_volume(state.range(0));
  const Orientation o = ras_orientation(v.affine);
  for (auto _ : state) benchmark::DoNotOptimize(reorient(v, o));
  label(state);
}

void BM_DataWindow(benchmark::State& state) {
  const Volume& v = file_volume(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(window_intensity(v));
  label(state);
}

void BM_DataResizeArea(benchmark::State& state) {
  const Volume& v = file_volume(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(resize_area(v, {128, 128, 128}));
  label(state);
}

void BM_DataPreprocessAll(benchmark::State& state) {
  const Volume& v = file_volume(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(preprocess_image(v));
  label(state);
}

void BM_DataHeatmapsAndInput(benchmark::State& state) {
  const Volume& v = file_volume(state.range(0));
  const Preprocessed p = preprocess_image(v);
  Clicks c;
  c.spleen = {{double(v.shape[0] / 2), double(v.shape[1] / 2), double(v.shape[2] / 2)}, {10, 20, 30}};
  c.background = {{5, 5, 5}};
  for (auto _ : state) {
    const GridClicks g = map_clicks(c, p.record);
    benchmark::DoNotOptimize(assemble_input_ndhwc(p.ct, g));
  }
  label(state);
}

// The training click round's host work at 128^3 (train/trainer.cpp interact(), after the no-grad forward): a phantom
// label resized (nearest) to 128^3 and a prediction = that label shifted by `shift` voxels along each axis (missed and
// extra spleen: both discrepancy kinds). Arg 0: discrepancy regions, 1: new clicks (distance transforms + draws +
// pruning), 2: the two heatmaps of the resulting guidance.
struct ClickRoundCase {
  LabelVolume label, pred;
  Guidance start;
};
const ClickRoundCase& click_round_case() {
  static const ClickRoundCase c = [] {
    ClickRoundCase k;
    const Phantom ph = make_phantom(7, 0);
    k.label = resize_nearest(ph.label, {128, 128, 128});
    k.pred = k.label;
    const int shift = 3;
    for (int64_t i = 0; i < 128; ++i)
      for (int64_t j = 0; j < 128; ++j)
        for (int64_t l = 0; l < 128; ++l) {
          const int64_t si = std::min<int64_t>(127, i + shift), sj = std::min<int64_t>(127, j + shift),
                        sl = std::min<int64_t>(127, l + shift);
          k.pred.data[k.label.index(i, j, l)] = k.label.data[k.label.index(si, sj, sl)];
        }
    Rng rng = click_rng(123, 0, 0, 0);
    k.start = initial_guidance(k.label, bundle_label_names(), rng);
    return k;
  }();
  return c;
}

void BM_ClickRound128(benchmark::State& state) {
  const ClickRoundCase& c = click_round_case();
  const LabelNames names = bundle_label_names();
  const auto disc = find_discrepancy_regions(c.label, c.pred, names);
  std::vector<float> input(static_cast<size_t>(3) * 128 * 128 * 128, 0.f);
  uint64_t round = 0;
  for (auto _ : state) {
    if (state.range(0) == 0) {
      benchmark::DoNotOptimize(find_discrepancy_regions(c.label, c.pred, names));
    } else if (state.range(0) == 1) {
      Rng rng = click_rng(123, 0, 1, round++ % 16);
      benchmark::DoNotOptimize(add_random_guidance(c.start, disc, c.label, names, rng));
    } else if (state.range(0) == 2) {
      benchmark::DoNotOptimize(guidance_heatmaps(c.start, {128, 128, 128}));
    } else {  // what dex-train does: straight into the interleaved 3-channel network input
      for (size_t l = 0; l < c.start.size(); ++l)
        gaussian_heatmap_into(guidance_points(c.start[l]), {128, 128, 128}, input.data() + 1 + l, 3, 3.f);
      benchmark::DoNotOptimize(input.data());
    }
  }
  state.SetLabel(state.range(0) == 0   ? "discrepancy"
                 : state.range(0) == 1 ? "new clicks"
                 : state.range(0) == 2 ? "heatmaps"
                                       : "heatmaps into the input");
}
BENCHMARK(BM_ClickRound128)->Arg(0)->Arg(1)->Arg(2)->Arg(3)->Unit(benchmark::kMillisecond)->MinTime(0.5);

void BM_DataInvert(benchmark::State& state) {
  const Volume& v = file_volume(state.range(0));
  const Preprocessed p = preprocess_image(v);
  std::vector<float> logits(2 * 128 * 128 * 128);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(0.001f * static_cast<float>(i));
  for (auto _ : state) benchmark::DoNotOptimize(postprocess_logits(logits.data(), OutputLayout::NDHWC, p.record));
  label(state);
}

void BM_DataWriteMaskAndProb(benchmark::State& state) {
  const Volume& v = file_volume(state.range(0));
  const Preprocessed p = preprocess_image(v);
  std::vector<float> logits(2 * 128 * 128 * 128);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(0.001f * static_cast<float>(i));
  const Postprocessed post = postprocess_logits(logits.data(), OutputLayout::NDHWC, p.record);
  const std::string dir = "/tmp/dex_bench_out_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const bool prob = state.range(1) == 1;
  for (auto _ : state) {
    if (prob) write_nifti(dir + "/prob.nii.gz", post.prob_spleen, NiftiDType::F32);
    else write_nifti(dir + "/mask.nii.gz", post.mask);
  }
  std::filesystem::remove_all(dir);
  label(state);
  state.SetLabel(str(prob ? "prob f32 " : "mask u8 ", state.range(0) == 0 ? "real" : "synthetic"));
}

#define DATA_BENCH(fn) BENCHMARK(fn)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MinTime(0.5)
DATA_BENCH(BM_DataRead);
DATA_BENCH(BM_DataOrient);
DATA_BENCH(BM_DataWindow);
DATA_BENCH(BM_DataResizeArea);
DATA_BENCH(BM_DataPreprocessAll);
DATA_BENCH(BM_DataHeatmapsAndInput);
DATA_BENCH(BM_DataInvert);
BENCHMARK(BM_DataWriteMaskAndProb)->Args({0, 0})->Args({0, 1})->Args({1, 0})->Args({1, 1})
    ->Unit(benchmark::kMillisecond)->MinTime(0.5);

}  // namespace
}  // namespace dex
