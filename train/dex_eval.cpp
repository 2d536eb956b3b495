// dex-eval: Dice against the number of clicks (train/evaluator.h) for a model on a dataset's validation split
// (or every case), written as OUT/eval.json, OUT/eval.csv and OUT/dice_vs_clicks.png.
//   dex-eval --model runs/train_small/model.safetensors --dataset-dir DIR --output-dir OUT [--clicks 0,1,3,5,10]
// Exit status: 0 done, 2 bad input, 1 anything else.
#include <algorithm>
#include <cstdio>
#include <limits>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <string>

#include "infer/cli_args.h"
#include "kernels/common.h"
#include "train/evaluator.h"
#include "train/metrics.h"

namespace {

const char* kUsage =
    "usage: dex-eval --model MODEL --dataset-dir DIR --output-dir OUT [--clicks 0,1,3,5,10] [--num-val 9]\n"
    "                [--all-cases] [--max-cases N] [--device cpu|cuda] [--sigma S] [--label-resize nearest|majority]\n"
    "                [--quiet]\n"
    "  Evaluates the last NUM_VAL cases of DIR (the trainer's validation split; --all-cases: every case) with 0, 1,\n"
    "  3, ... clicks added one at a time (largest error region, its deepest voxel). OUT must exist.\n"
    "  --sigma, --label-resize: click heatmap sigma (grid voxels) and grid-metric target; default: guidance_sigma and\n"
    "    label_resize of the config.json beside MODEL (dex-train writes it), else 3 and nearest (the bundle).\n";

int64_t parse_int(std::string key, const std::string& v, int64_t lo,
                  int64_t hi = std::numeric_limits<int64_t>::max()) {
  std::replace(key.begin(), key.end(), '_', '-');  // the flag as the user types it: --num-val
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used == v.size() && x >= lo && x <= hi) return x;
  } catch (const std::exception&) {
  }
  if (hi == std::numeric_limits<int64_t>::max())
    throw dex::InputError(dex::str("--", key, " expects an integer >= ", lo, ", got '", v, "'"));
  throw dex::InputError(dex::str("--", key, " expects integers in [", lo, ", ", hi, "], got '", v, "'"));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      }
    const dex::ParsedArgs a = dex::parse_args(
        argc, argv,
        {"model", "dataset_dir", "output_dir", "clicks", "num_val", "max_cases", "device", "sigma", "label_resize"},
        {"all_cases", "quiet"});
    dex::EvalConfig cfg;
    for (const char* k : {"model", "dataset_dir", "output_dir"})
      DEX_INPUT_CHECK(a.has(k), "missing --", k, " (see --help)");
    cfg.model_path = a.get("model");
    cfg.dataset_dir = a.get("dataset_dir");
    cfg.output_dir = a.get("output_dir");
    cfg.device = a.get("device", "cpu");
    cfg.all_cases = a.has("all_cases");
    cfg.progress = !a.has("quiet");
    if (a.has("num_val")) cfg.num_val = parse_int("num_val", a.get("num_val"), 0);
    if (a.has("max_cases")) cfg.max_cases = parse_int("max_cases", a.get("max_cases"), 0);
    dex::apply_training_config_defaults(cfg);  // label_resize / guidance_sigma of the run that wrote the model
    if (a.has("sigma")) {
      cfg.sigma = std::atof(a.get("sigma").c_str());
      DEX_INPUT_CHECK(cfg.sigma >= 0.1 && cfg.sigma <= 100, "--sigma ", a.get("sigma"),
                      " is not a number in [0.1, 100]");
    }
    if (a.has("label_resize")) cfg.label_resize = dex::parse_label_resize(a.get("label_resize"), "--label-resize");
    if (a.has("clicks")) {
      cfg.clicks.clear();
      std::stringstream ss(a.get("clicks"));
      std::string tok;
      while (std::getline(ss, tok, ',')) cfg.clicks.push_back(static_cast<int>(parse_int("clicks", tok, 0, 1000)));
    }
    const dex::EvalResult r = dex::evaluate(cfg);
    dex::write_eval_json(cfg.output_dir + "/eval.json", cfg, r);
    dex::write_eval_csv(cfg.output_dir + "/eval.csv", r);
    std::vector<dex::PlotSeries> plot(2);
    for (size_t i = 0; i < r.clicks.size(); ++i) {
      plot[0].x.push_back(r.clicks[i]);
      plot[0].y.push_back(r.mean_dice_image[i]);
      plot[1].x.push_back(r.clicks[i]);
      plot[1].y.push_back(r.mean_mean_dice_grid[i]);
    }
    plot[0].rgb = {30, 70, 220};
    plot[1].rgb = {20, 160, 60};
    dex::write_line_plot(cfg.output_dir + "/dice_vs_clicks.png", plot);
    std::printf("clicks  spleen_dice_image  spleen_dice_grid  bundle_mean_dice_grid   (%zu cases, %.1f s)\n",
                r.cases.size(), r.seconds);
    for (size_t i = 0; i < r.clicks.size(); ++i)
      std::printf("%6d  %17.4f  %16.4f  %21.4f\n", r.clicks[i], r.mean_dice_image[i], r.mean_dice_spleen_grid[i],
                  r.mean_mean_dice_grid[i]);
    return 0;
  } catch (const dex::InputError& e) {
    std::fprintf(stderr, "dex-eval: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dex-eval: error: %s\n", e.what());
    return 1;
  }
}
