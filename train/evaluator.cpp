#include "train/evaluator.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "data/click_simulation.h"
#include "data/dataset.h"
#include "data/distance_transform.h"
#include "data/nifti_io.h"
#include "data/preprocess.h"
#include "data/resize.h"
#include "kernels/backend.h"
#include "kernels/elementwise.h"
#include "layers/model_file.h"
#include "train/metrics.h"

namespace dex {

int32_t connected_components_3d(const uint8_t* mask, const std::array<int64_t, 3>& shape, std::vector<int32_t>& labels,
                                int connectivity, std::vector<int64_t>* sizes) {
  DEX_CHECK(connectivity == 6 || connectivity == 26, "connected_components_3d: connectivity must be 6 or 26, got ",
            connectivity);
  const int64_t D = shape[0], H = shape[1], W = shape[2], n = D * H * W;
  labels.assign(static_cast<size_t>(n), 0);
  if (sizes) sizes->clear();
  std::vector<std::array<int, 3>> offs;
  for (int a = -1; a <= 1; ++a)
    for (int b = -1; b <= 1; ++b)
      for (int c = -1; c <= 1; ++c) {
        const int nz = (a != 0) + (b != 0) + (c != 0);
        if (nz == 0 || (connectivity == 6 && nz != 1)) continue;
        offs.push_back({a, b, c});
      }
  std::vector<int64_t> queue;
  int32_t count = 0;
  for (int64_t s = 0; s < n; ++s) {
    if (!mask[s] || labels[s]) continue;
    ++count;
    labels[s] = count;
    queue.assign(1, s);
    for (size_t q = 0; q < queue.size(); ++q) {
      const int64_t v = queue[q], i = v / (H * W), j = v / W % H, k = v % W;
      for (const auto& o : offs) {
        const int64_t ii = i + o[0], jj = j + o[1], kk = k + o[2];
        if (ii < 0 || jj < 0 || kk < 0 || ii >= D || jj >= H || kk >= W) continue;
        const int64_t u = (ii * H + jj) * W + kk;
        if (mask[u] && !labels[u]) {
          labels[u] = count;
          queue.push_back(u);
        }
      }
    }
    if (sizes) sizes->push_back(static_cast<int64_t>(queue.size()));
  }
  return count;
}

EvalClick next_eval_click(const LabelVolume& pred, const LabelVolume& gt, uint8_t fg,
                          const std::vector<std::array<int64_t, 3>>& exclude) {
  DEX_CHECK(pred.shape == gt.shape, "next_eval_click: prediction and ground truth differ in shape");
  const int64_t n = gt.size();
  EvalClick best;
  std::vector<uint8_t> err(static_cast<size_t>(n));
  std::vector<int32_t> labels, best_labels;
  int32_t best_label = 0;
  for (int kind = 0; kind < 2; ++kind) {  // 0: missed foreground, 1: false foreground
    for (int64_t v = 0; v < n; ++v) {
      const bool g = gt.data[v] == fg, p = pred.data[v] == fg;
      err[v] = kind == 0 ? (g && !p) : (p && !g);
    }
    for (const auto& e : exclude)
      if (e[0] >= 0 && e[1] >= 0 && e[2] >= 0 && e[0] < gt.shape[0] && e[1] < gt.shape[1] && e[2] < gt.shape[2])
        err[static_cast<size_t>(gt.index(e[0], e[1], e[2]))] = 0;
    std::vector<int64_t> sizes;
    connected_components_3d(err.data(), gt.shape, labels, 6, &sizes);
    for (size_t c = 0; c < sizes.size(); ++c)
      if (sizes[c] > best.region_voxels) {
        best.found = true;
        best.region_voxels = sizes[c];
        best.spleen = kind == 0;
        best_label = static_cast<int32_t>(c + 1);
        best_labels = labels;  // copied only when the best changes
      }
  }
  if (!best.found) return best;
  // Bounding box of the region, one voxel of margin so that the image border counts as boundary.
  const auto& S = gt.shape;
  std::array<int64_t, 3> lo{S[0], S[1], S[2]}, hi{-1, -1, -1};
  for (int64_t i = 0; i < S[0]; ++i)
    for (int64_t j = 0; j < S[1]; ++j)
      for (int64_t k = 0; k < S[2]; ++k)
        if (best_labels[static_cast<size_t>((i * S[1] + j) * S[2] + k)] == best_label) {
          const int64_t p[3] = {i, j, k};
          for (int a = 0; a < 3; ++a) lo[a] = std::min(lo[a], p[a]), hi[a] = std::max(hi[a], p[a]);
        }
  const std::array<int64_t, 3> cs{hi[0] - lo[0] + 3, hi[1] - lo[1] + 3, hi[2] - lo[2] + 3};
  std::vector<uint8_t> crop(static_cast<size_t>(cs[0] * cs[1] * cs[2]), 0);
  for (int64_t i = lo[0]; i <= hi[0]; ++i)
    for (int64_t j = lo[1]; j <= hi[1]; ++j)
      for (int64_t k = lo[2]; k <= hi[2]; ++k)
        crop[static_cast<size_t>(((i - lo[0] + 1) * cs[1] + (j - lo[1] + 1)) * cs[2] + (k - lo[2] + 1))] =
            best_labels[static_cast<size_t>((i * S[1] + j) * S[2] + k)] == best_label;
  const std::vector<int32_t> dist = distance_transform_cdt_3d(crop.data(), cs);
  int64_t arg = -1;
  for (int64_t v = 0; v < static_cast<int64_t>(dist.size()); ++v)
    if (crop[v] && (arg < 0 || dist[v] > dist[arg])) arg = v;
  best.depth = dist[arg];
  best.ijk = {arg / (cs[1] * cs[2]) - 1 + lo[0], arg / cs[2] % cs[1] - 1 + lo[1], arg % cs[2] - 1 + lo[2]};
  return best;
}

namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

bool apply_training_config_defaults(EvalConfig& cfg) {
  const size_t slash = cfg.model_path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : cfg.model_path.substr(0, slash);
  const std::string path = dir + "/config.json";
  std::ifstream f(path);
  if (!f.good()) return false;
  nlohmann::json j;
  try {
    f >> j;
  } catch (const std::exception& e) {
    throw InputError(str("training config '", path, "' beside the model is not valid JSON: ", e.what()));
  }
  if (j.contains("label_resize") && j["label_resize"].is_string())
    cfg.label_resize = parse_label_resize(j["label_resize"].get<std::string>(), path);
  if (j.contains("guidance_sigma") && j["guidance_sigma"].is_number()) cfg.sigma = j["guidance_sigma"].get<double>();
  return true;
}

EvalResult evaluate(const EvalConfig& cfg) {
  const auto t_all = std::chrono::steady_clock::now();
  DEX_INPUT_CHECK(!cfg.clicks.empty(), "no click counts to evaluate");
  for (size_t i = 0; i < cfg.clicks.size(); ++i)
    DEX_INPUT_CHECK(cfg.clicks[i] >= 0 && (i == 0 || cfg.clicks[i] > cfg.clicks[i - 1]),
                    "click counts must be >= 0 and increasing, got ", cfg.clicks[i], " at position ", i);
  DEX_INPUT_CHECK(is_dir(cfg.output_dir), "output folder '", cfg.output_dir, "' does not exist");
  const Device dev = cfg.device == "cuda" ? Device::CUDA : Device::CPU;
  DEX_INPUT_CHECK(cfg.device == "cpu" || cfg.device == "cuda", "device '", cfg.device, "' is not cpu or cuda");
  std::string why;
  DEX_INPUT_CHECK(backend_available(dev, &why), "device '", cfg.device, "' is not available: ", why);

  const LoadedModel lm = load_model(cfg.model_path);
  DEX_INPUT_CHECK(lm.info.arch.in_channels == 3 && lm.info.arch.out_channels == 2, "model '", cfg.model_path,
                  "' has ", lm.info.arch.in_channels, " input and ", lm.info.arch.out_channels,
                  " output channels; DeepEdit needs 3 and 2");
  DynUNet net(lm.info.arch, dev);
  load_weights_into(net, lm, cfg.model_path);
  Arena arena(*backend(dev).allocator, 0, "eval");
  const Backend& be = backend(dev);

  const auto items = list_training_items(cfg.dataset_dir);
  std::vector<DatasetItem> sel = cfg.all_cases ? items : split_train_val(items, cfg.num_val).val;
  if (cfg.max_cases > 0 && static_cast<int64_t>(sel.size()) > cfg.max_cases) sel.resize(cfg.max_cases);
  DEX_INPUT_CHECK(!sel.empty(), "dataset '", cfg.dataset_dir, "': no cases to evaluate");
  const LabelMapping mapping = make_label_mapping(bundle_label_names(), read_dataset_labels(cfg.dataset_dir));

  PreprocessOptions popt;
  popt.spatial_size = lm.info.spatial_size;
  popt.a_min = lm.info.a_min;
  popt.a_max = lm.info.a_max;
  popt.sigma = static_cast<float>(cfg.sigma);
  const auto& ss = popt.spatial_size;
  const int64_t nvox = ss[0] * ss[1] * ss[2];
  const int max_clicks = cfg.clicks.back();

  EvalResult res;
  res.clicks = cfg.clicks;
  for (size_t ci = 0; ci < sel.size(); ++ci) {
    const auto t0 = std::chrono::steady_clock::now();
    const DatasetItem& item = sel[ci];
    CaseEval ce;
    ce.image = item.image;
    ce.label = item.label;
    const Volume image = read_nifti(item.image);
    LabelVolume gt = read_nifti_labels(item.label);
    DEX_INPUT_CHECK(gt.shape == image.shape, "label '", item.label, "' has another shape than its image '",
                    item.image, "'");
    apply_label_mapping(mapping, gt);
    const Preprocessed pre = preprocess_image(image, popt);
    const LabelVolume gt_grid = resize_label(reorient(gt, pre.record.geometry.orientation), ss, cfg.label_resize);

    Clicks clicks;
    std::vector<float> logits(static_cast<size_t>(nvox * 2));
    LabelVolume pred_grid;
    pred_grid.shape = ss;
    pred_grid.data.resize(static_cast<size_t>(nvox));
    size_t next_report = 0;
    for (int k = 0; k <= max_clicks; ++k) {
      const std::vector<float> input = assemble_input_ndhwc(pre.ct, map_clicks(clicks, pre.record), popt.sigma);
      arena.reset();
      {
        Tape tape(arena, dev);
        NoGradGuard ng(tape);
        Tensor x = tape.alloc(ndhwc(1, ss[0], ss[1], ss[2], 3), false);
        be.copy(x.data, dev, input.data(), Device::CPU, x.bytes(), nullptr);
        Tensor y = net.forward(tape, x);
        be.copy(logits.data(), Device::CPU, y.data, dev, logits.size() * sizeof(float), nullptr);
        be.synchronize(nullptr);
      }
      arena.reset();
      argmax_cpu(nvox, 2, logits.data(), pred_grid.data.data());  // the Backend's argmax (torch's ties and NaN)
      const Postprocessed post = postprocess_logits(logits.data(), OutputLayout::NDHWC, pre.record);
      if (next_report < cfg.clicks.size() && cfg.clicks[next_report] == k) {
        ce.dice_image.push_back(dice_score(post.mask.data.data(), gt.data.data(), gt.size(), 1));
        ce.dice_spleen_grid.push_back(dice_score(pred_grid.data.data(), gt_grid.data.data(), nvox, 1));
        ce.mean_dice_grid.push_back(bundle_mean_dice(pred_grid.data.data(), gt_grid.data.data(), nvox, 2));
        ++next_report;
      }
      if (k == max_clicks) break;
      const EvalClick c = next_eval_click(post.mask, gt, 1, ce.click_ijk);
      if (!c.found) {
        // Perfect: the remaining click counts keep this prediction.
        while (next_report < cfg.clicks.size()) {
          ce.dice_image.push_back(ce.dice_image.empty() ? 1.0 : dice_score(post.mask.data.data(), gt.data.data(),
                                                                           gt.size(), 1));
          ce.dice_spleen_grid.push_back(dice_score(pred_grid.data.data(), gt_grid.data.data(), nvox, 1));
          ce.mean_dice_grid.push_back(bundle_mean_dice(pred_grid.data.data(), gt_grid.data.data(), nvox, 2));
          ++next_report;
        }
        break;
      }
      const Click p{double(c.ijk[0]), double(c.ijk[1]), double(c.ijk[2])};
      (c.spleen ? clicks.spleen : clicks.background).push_back(p);
      ce.click_ijk.push_back(c.ijk);
      ce.click_spleen.push_back(c.spleen);
    }
    ce.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (cfg.progress) {
      std::fprintf(stderr, "dex-eval: case %zu/%zu %s: spleen Dice by clicks", ci + 1, sel.size(), item.image.c_str());
      for (size_t i = 0; i < cfg.clicks.size(); ++i) std::fprintf(stderr, " %d:%.4f", cfg.clicks[i], ce.dice_image[i]);
      std::fprintf(stderr, " (%.1f s)\n", ce.seconds);
    }
    res.cases.push_back(std::move(ce));
  }
  for (size_t i = 0; i < cfg.clicks.size(); ++i) {
    std::vector<double> a, b, c;
    for (const auto& ce : res.cases) {
      a.push_back(ce.dice_image[i]);
      b.push_back(ce.dice_spleen_grid[i]);
      c.push_back(ce.mean_dice_grid[i]);
    }
    res.mean_dice_image.push_back(nan_mean(a));
    res.mean_dice_spleen_grid.push_back(nan_mean(b));
    res.mean_mean_dice_grid.push_back(nan_mean(c));
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
  return res;
}

namespace {
nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }
nlohmann::json nums(const std::vector<double>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : v) a.push_back(num(x));
  return a;
}
void write_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = str(path, ".tmp.", getpid());
  {
    std::ofstream f(tmp);
    DEX_INPUT_CHECK(f.good(), "cannot write ", tmp);
    f << text;
    DEX_INPUT_CHECK(f.good(), "error writing ", tmp);
  }
  DEX_INPUT_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}
}  // namespace

void write_eval_json(const std::string& path, const EvalConfig& cfg, const EvalResult& r) {
  nlohmann::json j;
  j["model"] = cfg.model_path;
  j["dataset_dir"] = cfg.dataset_dir;
  j["clicks"] = r.clicks;
  j["sigma"] = cfg.sigma;
  j["label_resize"] = label_resize_name(cfg.label_resize);
  j["click_rule"] = "largest 6-connected error region (missed or false spleen), voxel farthest from its boundary";
  j["mean"] = {{"spleen_dice_image", nums(r.mean_dice_image)},
               {"spleen_dice_grid", nums(r.mean_dice_spleen_grid)},
               {"bundle_mean_dice_grid", nums(r.mean_mean_dice_grid)}};
  j["seconds"] = r.seconds;
  nlohmann::json cases = nlohmann::json::array();
  for (const auto& c : r.cases) {
    nlohmann::json cl = nlohmann::json::array();
    for (size_t i = 0; i < c.click_ijk.size(); ++i)
      cl.push_back({{"ijk", c.click_ijk[i]}, {"label", c.click_spleen[i] ? "spleen" : "background"}});
    cases.push_back({{"image", c.image},
                     {"label", c.label},
                     {"spleen_dice_image", nums(c.dice_image)},
                     {"spleen_dice_grid", nums(c.dice_spleen_grid)},
                     {"bundle_mean_dice_grid", nums(c.mean_dice_grid)},
                     {"clicks", cl},
                     {"seconds", c.seconds}});
  }
  j["cases"] = cases;
  write_atomic(path, j.dump(2) + "\n");
}

void write_eval_csv(const std::string& path, const EvalResult& r) {
  std::string s = "case,clicks,spleen_dice_image,spleen_dice_grid,bundle_mean_dice_grid\n";
  auto f = [](double x) { return std::isfinite(x) ? str(x) : std::string("nan"); };
  for (const auto& c : r.cases)
    for (size_t i = 0; i < r.clicks.size(); ++i)
      s += str(c.image, ",", r.clicks[i], ",", f(c.dice_image[i]), ",", f(c.dice_spleen_grid[i]), ",",
               f(c.mean_dice_grid[i]), "\n");
  for (size_t i = 0; i < r.clicks.size(); ++i)
    s += str("mean,", r.clicks[i], ",", f(r.mean_dice_image[i]), ",", f(r.mean_dice_spleen_grid[i]), ",",
             f(r.mean_mean_dice_grid[i]), "\n");
  write_atomic(path, s);
}

}  // namespace dex
