// dex-bench: whole-model and end-to-end timings, the rows of the bundle's README table next to dex's (issue 8).
//   model computation: one forward of the DynUNet on a random 1x3xS^3 input (no pre/post): the inference plan in
//     fp32 and (CUDA) fp16, one graph replay each, median of --runs (>= 50 by default on CUDA) after --warmup, timed
//     with CUDA events around the replays on the plan's stream (InferencePlan::replay_times_ms; wall clock on the
//     CPU); optionally the tape forward (the training path, fewer runs);
//   end to end in memory: Segmenter::set_image + segment (volume in memory -> mask in memory);
//   end to end file to file: read NIfTI -> Segmenter -> write the mask NIfTI (as the bundle's end2end row);
//   click: one additional click with a loaded Segmenter and a set image (heatmaps, one forward, the way back);
// for a 512x512x100 phantom (data/phantom.h, generated in memory, written to a temp file for the file-to-file row)
// and the real case (--image; default: ../shared's real CT when present), fp32 and (CUDA) fp16 Segmenters.
// Prints the bundle's table (published A100 rows) with dex's rows beside them, ratios, the fraction of the H100 floor
// (1.23 ms, issue 8), PyTorch on the same device when --torch names torch_gpu_baseline.py's JSON, and the fp16
// accuracy (logits relative error vs the fp32 plan, mask Dice vs the fp32 Segmenter). --out writes it all as JSON.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "data/nifti_io.h"
#include "data/phantom.h"
#include "data/resize.h"
#include "infer/cli_args.h"
#include "infer/segmenter.h"
#include "kernels/backend.h"
#include "kernels/rng.h"
#include "layers/model_file.h"

#if defined(DEX_HAVE_CUDA)
#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_runtime.h"
#endif

namespace fs = std::filesystem;
using namespace dex;
using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

namespace {

const char* kUsage = R"(dex-bench: model computation and end-to-end timings, next to the bundle's published A100 table.
  dex-bench [--device cpu|cuda] [--runs N] [--e2e-runs N] [--warmup N] [--model M] [--image CT.nii.gz]
            [--size 128] [--what model,tape,e2e,click] [--precision fp32,fp16] [--no-phantom512] [--torch torch.json]
            [--out results.json]
  --runs        timed repetitions of the model and click rows (default: 50 on cuda, 3 on cpu)
  --e2e-runs    timed repetitions of the end-to-end rows (default: 5 on cuda, 2 on cpu)
  --warmup      untimed repetitions before each row (default: 3 on cuda, 1 on cpu)
  --model       a model file; default: the bundle's network with seeded random weights (written to a temp file)
  --image       a real CT for the end-to-end rows (default: the real case in ../shared, when present)
  --size        the grid of the default model (default 128, the bundle's; smaller for a quick CPU rehearsal)
  --what        rows to run (default model,e2e,click; "tape" adds the tape forward, the training path)
  --precision   fp32, fp16 or fp32,fp16 (default on cuda: both; fp16 alone skips the slow fp32 CUDA rows)
  --no-phantom512  skip the 512x512x100 phantom rows
  --torch       JSON of bench/torch_gpu_baseline.py on the same device: its rows join the table with ratios
  --save-model  keep the seeded random model at this path (and the phantom beside it)
Timing: the model rows on CUDA time graph replays with CUDA events on the plan's stream; the other CUDA rows use
CUDA events around each whole call (every call ends synchronised, host work included); CPU rows the wall clock.
Each row reports the median, the minimum and every time.
)";

// The bundle README (docs/README.md, spec §12), A100 80GB, ms.
const std::map<std::string, double> kPublishedModel = {
    {"PyTorch fp32", 147.52}, {"PyTorch AMP", 40.32}, {"TensorRT fp32", 28.87}, {"TensorRT fp16", 11.94}};
const std::map<std::string, double> kPublishedEnd2End = {
    {"PyTorch fp32", 1292}, {"PyTorch AMP", 1205}, {"TensorRT fp32", 1168}, {"TensorRT fp16", 1150}};
const char* kMethods[] = {"PyTorch fp32", "PyTorch AMP", "TensorRT fp32", "TensorRT fp16"};
// The H100 SXM floor of one forward (issue 8): per conv layer max(arithmetic at 989 TFLOP/s, fp16 traffic at
// 3.35 TB/s), summed.
constexpr double kH100FloorMs = 1.23;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Times calls of f(): CUDA events on the default stream around each call on CUDA (the plan and the Segmenter end
// every call synchronised, so the events bracket the whole call), the wall clock on the CPU.
class Timer {
 public:
  explicit Timer(Device dev) : m_cuda(dev == Device::CUDA) {
#if defined(DEX_HAVE_CUDA)
    if (m_cuda) {
      DEX_CUDA_CHECK(cudaEventCreate(&m_start));
      DEX_CUDA_CHECK(cudaEventCreate(&m_stop));
    }
#endif
  }
  ~Timer() {
#if defined(DEX_HAVE_CUDA)
    if (m_cuda) {
      cudaEventDestroy(m_start);
      cudaEventDestroy(m_stop);
    }
#endif
  }
  template <class F>
  double time(F&& f) {
#if defined(DEX_HAVE_CUDA)
    if (m_cuda) {
      DEX_CUDA_CHECK(cudaEventRecord(m_start, nullptr));
      f();
      DEX_CUDA_CHECK(cudaEventRecord(m_stop, nullptr));
      DEX_CUDA_CHECK(cudaEventSynchronize(m_stop));
      float ms = 0;
      DEX_CUDA_CHECK(cudaEventElapsedTime(&ms, m_start, m_stop));
      return ms;
    }
#endif
    auto t0 = Clock::now();
    f();
    return ms_since(t0);
  }
  template <class F>
  std::vector<double> repeat(int warmup, int runs, F&& f) {
    for (int i = 0; i < warmup; ++i) f();
    std::vector<double> t;
    for (int i = 0; i < runs; ++i) t.push_back(time(f));
    return t;
  }

 private:
  bool m_cuda;
#if defined(DEX_HAVE_CUDA)
  cudaEvent_t m_start = nullptr, m_stop = nullptr;
#endif
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

Volume phantom_512x512x100(NiftiMeta* meta) {
  PhantomOptions po;
  po.size = PhantomSize::Full;
  po.orientation = PhantomOrientation::LPS;
  Phantom p = make_phantom(11, 0, po);
  Shape3 target{512, 512, 100};
  Volume v = resize_nearest(p.ct, target);
  v.affine = resize_affine(p.ct.affine, p.ct.shape, target);
  if (meta) {
    meta->affine = v.affine;
    meta->shape = v.shape;
    meta->sform_code = meta->qform_code = 1;
  }
  return v;
}

double dice(const LabelVolume& a, const LabelVolume& b) {
  int64_t inter = 0, sa = 0, sb = 0;
  for (size_t i = 0; i < a.data.size() && i < b.data.size(); ++i) {
    inter += a.data[i] && b.data[i];
    sa += a.data[i] != 0;
    sb += b.data[i] != 0;
  }
  return sa + sb == 0 ? 1.0 : 2.0 * double(inter) / double(sa + sb);
}

std::string fmt(double v, int prec = 2) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

int run(int argc, char** argv) {
  ParsedArgs a = parse_args(argc, argv,
                            {"device", "runs", "e2e_runs", "warmup", "model", "image", "size", "what", "out",
                             "save_model", "torch", "precision"},
                            {"help", "no_phantom512", "phantom512"});
  if (a.has("help")) {
    std::cout << kUsage;
    return 0;
  }
  const std::string dev_name = a.get("device", "cpu");
  DEX_INPUT_CHECK(dev_name == "cpu" || dev_name == "cuda", "--device must be cpu or cuda, got '", dev_name, "'");
  const Device dev = dev_name == "cuda" ? Device::CUDA : Device::CPU;
  const bool cuda = dev == Device::CUDA;
  std::string why;
  DEX_INPUT_CHECK(backend_available(dev, &why), "device ", dev_name, " is not available: ", why);
  const int runs = std::stoi(a.get("runs", cuda ? "50" : "3"));
  const int e2e_runs = std::stoi(a.get("e2e_runs", cuda ? "5" : "2"));
  const int warmup = std::stoi(a.get("warmup", cuda ? "3" : "1"));
  const int S = std::stoi(a.get("size", "128"));
  DEX_INPUT_CHECK(runs >= 1 && e2e_runs >= 1 && warmup >= 0, "--runs and --e2e-runs must be >= 1, --warmup >= 0");
  const std::string what = a.get("what", "model,e2e,click");
  auto wants = [&](const char* w) { return what.find(w) != std::string::npos; };
  std::string model = a.get("model");
  std::string tmp_model;
  if (model.empty()) {
    tmp_model = (fs::temp_directory_path() / ("dex_bench_model_" + std::to_string(::getpid()) + ".safetensors")).string();
    DynUNet net;
    net.init(123);
    ModelInfo info;
    info.spatial_size = {S, S, S};
    save_model(tmp_model, net, info);
    model = tmp_model;
  }
  // --precision fp32,fp16 (CUDA default: both; CPU: fp32, the only CPU path). fp16 alone skips the fp32 rows, which
  // take ~1.2 s a forward on an H100 (reference direct convolutions).
  const std::string pl = a.get("precision", cuda ? "fp32,fp16" : "fp32");
  DEX_INPUT_CHECK(pl == "fp32" || pl == "fp16" || pl == "fp32,fp16" || pl == "fp16,fp32",
                  "--precision takes fp32, fp16 or fp32,fp16, got '", pl, "'");
  std::vector<Precision> precisions;
  if (pl != "fp16") precisions.push_back(Precision::FP32);
  if (pl != "fp32") precisions.push_back(Precision::FP16);
  DEX_INPUT_CHECK(cuda || pl == "fp32", "--precision fp16 needs --device cuda (the CPU runs fp32)");
  auto pname = [](Precision p) { return p == Precision::FP16 ? "fp16" : "fp32"; };

  json out;
  out["device"] = dev_name;
#if defined(DEX_HAVE_CUDA)
  if (cuda) out["device_summary"] = cuda_device_summary();
#endif
  out["runs"] = {{"model_click", runs}, {"e2e", e2e_runs}, {"warmup", warmup}};
  out["timing"] = cuda ? "model rows: CUDA events around graph replays on the plan's stream; other rows: CUDA events "
                         "around each whole call (calls end synchronised)"
                       : "wall clock";
  out["published_a100_ms"] = {{"model computation", kPublishedModel}, {"end2end", kPublishedEnd2End}};
  out["h100_floor_ms"] = kH100FloorMs;
  Timer timer(dev);
  std::map<std::string, double> med;  // row name -> median
  std::string model_row[2];           // the plan rows' names, fp32 and fp16
  int64_t model_side = 0;             // the model rows' grid (cubic), for the PyTorch rows' size check
  std::printf("| row | median ms | min ms | runs |\n|---|---|---|---|\n");
  auto row = [&](const std::string& name, const std::vector<double>& t) {
    const double m = median(t);
    med[name] = m;
    std::printf("| %s | %.2f | %.2f | %zu |\n", name.c_str(), m, *std::min_element(t.begin(), t.end()), t.size());
    std::fflush(stdout);
    out["rows"][name] = {{"median_ms", m}, {"min_ms", *std::min_element(t.begin(), t.end())}, {"all_ms", t}};
  };

  // ---- model computation ------------------------------------------------------------------------------------
  if (wants("model") || wants("tape")) {
    LoadedModel lm = load_model(model);
    DynUNet net(lm.info.arch, dev);
    load_weights_into(net, lm, model);
    const auto& ss = lm.info.spatial_size;
    const Int3 grid{int(ss[0]), int(ss[1]), int(ss[2])};
    const std::string gs = str(ss[0], "x", ss[1], "x", ss[2]);
    model_side = ss[0] == ss[1] && ss[1] == ss[2] ? ss[0] : -1;
    std::vector<float> x(size_t(ss[0] * ss[1] * ss[2]) * 3);
    for (size_t i = 0; i < x.size(); ++i) x[i] = rng_uniform(7, 1, i);
    if (wants("tape")) {  // the training-time path: the tape (no-grad), a growing arena
      const Backend& be = backend(dev);
      Arena arena(*be.allocator, 0, "bench");
      auto t = timer.repeat(std::min(warmup, 1), std::min(runs, 5), [&] {
        arena.reset();
        Tape tape(arena, dev);
        NoGradGuard ng(tape);
        Tensor in = tape.alloc(ndhwc(1, grid[0], grid[1], grid[2], 3), false);
        be.copy(in.data, dev, x.data(), Device::CPU, x.size() * 4, nullptr);
        Tensor y = net.forward(tape, in);
        be.synchronize(nullptr);
        (void)y;
      });
      row(str("model computation fp32 ", gs, " (tape)"), t);
      out["tape_arena_peak_bytes"] = arena.peak();
    }
    if (wants("model")) {
      std::vector<float> ref_logits;
      for (Precision prec : precisions) {  // the inference path: the plan (CUDA: one graph replay)
        PlanOptions po;
        po.device = dev;
        po.precision = prec == Precision::FP16 ? DType::F16 : DType::F32;
        po.keep_input = true;  // every run sees the same input (a reused input buffer would feed garbage)
        InferencePlan plan(net, grid, po);
        plan.upload(x.data());
        // CUDA: CUDA events around graph replays on the plan's stream (no host synchronisation inside the interval).
        auto t = cuda ? plan.replay_times_ms(warmup, runs) : timer.repeat(warmup, runs, [&] { plan.run(); });
        model_row[prec == Precision::FP16] = str("model computation ", pname(prec), " ", gs, " (plan)");
        row(model_row[prec == Precision::FP16], t);
        out["plan_bytes"][pname(prec)] = plan.memory().total();
        std::vector<float> z = plan.logits_host();
        if (prec == Precision::FP32) {
          ref_logits = std::move(z);
        } else if (!ref_logits.empty()) {  // fp16 accuracy: logits relative error vs the fp32 plan
          double num = 0, den = 0;
          for (size_t i = 0; i < z.size(); ++i) {
            num += (double(z[i]) - ref_logits[i]) * (double(z[i]) - ref_logits[i]);
            den += double(ref_logits[i]) * ref_logits[i];
          }
          out["accuracy"]["fp16_logits_rel_err_vs_fp32_random_input"] = std::sqrt(num / std::max(den, 1e-30));
        }
      }
    }
  }

  // ---- end to end and click ---------------------------------------------------------------------------------
  std::vector<std::pair<std::string, std::string>> images;  // name, path
  const std::string real =
      a.get("image", std::string(DEX_SOURCE_DIR) + "/../shared/data/real-ct/imagesTr/case_a.nii.gz");
  if (fs::exists(real)) images.push_back({"real CT " + fs::path(real).filename().string(), real});
  else if (a.has("image")) throw InputError("--image '" + real + "' does not exist");
  std::string p512;
  const std::string p512_name = "phantom 512x512x100";
  if (!a.has("no_phantom512") && (wants("e2e") || wants("click"))) {
    NiftiMeta meta;
    auto t0 = Clock::now();
    Volume v = phantom_512x512x100(&meta);
    out["phantom512_generate_ms"] = ms_since(t0);
    p512 = (fs::temp_directory_path() / ("dex_bench_p512_" + std::to_string(::getpid()) + ".nii.gz")).string();
    write_nifti(p512, v, NiftiDType::I16, nullptr);
    images.push_back({p512_name, p512});
  }
  const std::string outp =
      (fs::temp_directory_path() / ("dex_bench_out_" + std::to_string(::getpid()) + ".nii.gz")).string();
  std::map<std::string, LabelVolume> fp32_masks;  // automatic-mode masks of the fp32 Segmenter, per image
  if (wants("e2e") || wants("click")) {
    for (Precision prec : precisions) {
      SegmenterOptions so;
      so.device = dev;
      so.precision = prec;
      Segmenter seg(model, so);
      out["segmenter_plan_bytes"][pname(prec)] = seg.plan_bytes();
      for (auto& [name, path] : images) {
        const std::string tag = str(pname(prec), ", ", name);
        Volume v = read_nifti(path);
        if (wants("e2e")) {
          row("end to end in memory " + tag, timer.repeat(warmup > 0 ? 1 : 0, e2e_runs, [&] {
                seg.set_image(v);
                seg.segment({});
              }));
          StageTimer st = seg.last_timings();
          for (auto& s : st.stages()) out["stages_ms"][tag][s.first] = s.second;
          row("end to end file to file " + tag, timer.repeat(warmup > 0 ? 1 : 0, e2e_runs, [&] {
                NiftiMeta m;
                Volume vv = read_nifti(path, &m);
                seg.set_image(vv);
                Segmentation r = seg.segment({});
                write_nifti(outp, r.mask, &m);
              }));
        }
        seg.set_image(v);
        if (wants("click")) {
          Clicks c;
          c.spleen.push_back({double(v.shape[0] / 2), double(v.shape[1] / 2), double(v.shape[2] / 2)});
          row("one click (loaded Segmenter) " + tag, timer.repeat(warmup, runs, [&] { seg.segment(c); }));
          StageTimer st = seg.last_timings();
          for (auto& s : st.stages()) out["click_stages_ms"][tag][s.first] = s.second;
        }
        // fp16 accuracy on the real images: mask Dice vs the fp32 Segmenter (automatic mode).
        Segmentation r = seg.segment({});
        if (prec == Precision::FP32) fp32_masks[name] = std::move(r.mask);
        else if (fp32_masks.count(name)) out["accuracy"]["fp16_mask_dice_vs_fp32"][name] = dice(r.mask, fp32_masks[name]);
      }
    }
  }
  if (fs::exists(outp)) fs::remove(outp);

  // ---- the bundle's table with dex's rows beside it -----------------------------------------------------------
  json torch;
  if (a.has("torch")) {
    std::ifstream f(a.get("torch"));
    DEX_INPUT_CHECK(f.good(), "--torch '", a.get("torch"), "' cannot be read");
    try {
      torch = json::parse(f);
    } catch (const std::exception& e) {
      throw InputError("--torch '" + a.get("torch") + "' is not JSON: " + e.what());
    }
    out["torch_same_device"] = torch;
    if (model_side != 0 && torch.value("size", int64_t(0)) != model_side)
      std::printf("warning: the PyTorch rows are for a %lld^3 input, dex's model rows for %lld^3: not comparable\n",
                  static_cast<long long>(torch.value("size", int64_t(0))), static_cast<long long>(model_side));
  }
  auto torch_row = [&](const std::string& n) -> double {
    if (torch.is_null() || !torch.contains("rows")) return 0;
    for (auto& r : torch["rows"])
      if (r.value("name", "") == n && r.contains("median_ms")) return r["median_ms"].get<double>();
    return 0;
  };
  auto get = [&](const std::string& n) { return med.count(n) ? med[n] : 0.0; };
  auto e2e = [&](const char* p) { return get(str("end to end file to file ", p, ", ", p512_name)); };
  const double dex_model[2] = {get(model_row[0]), get(model_row[1])};
  const double dex_e2e[2] = {e2e("fp32"), e2e("fp16")};
  auto cell = [](double v, int prec = 2) { return v > 0 ? fmt(v, prec) : std::string("-"); };
  std::printf("\n## The bundle's table (published: A100 80GB) with dex on this device (%s)\n\n", dev_name.c_str());
  std::printf("| method | PyTorch fp32 | PyTorch AMP | TensorRT fp32 | TensorRT fp16 | dex fp32 | dex fp16 |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::printf("| model computation, A100 (published) | 147.52 | 40.32 | 28.87 | 11.94 | | |\n");
  std::printf("| model computation, this device | %s | %s | | | %s | %s |\n", cell(torch_row("eager_fp32")).c_str(),
              cell(torch_row("amp")).c_str(), cell(dex_model[0]).c_str(), cell(dex_model[1]).c_str());
  std::printf("| end2end, A100 (published) | 1292 | 1205 | 1168 | 1150 | | |\n");
  std::printf("| end2end (file to file, %s), this device | | | | | %s | %s |\n", p512_name.c_str(),
              cell(dex_e2e[0], 1).c_str(), cell(dex_e2e[1], 1).c_str());
  json table;
  const double best_model = dex_model[1] > 0 ? dex_model[1] : dex_model[0];
  const double best_e2e = dex_e2e[1] > 0 ? dex_e2e[1] : dex_e2e[0];
  std::printf("\nRatios (published A100 time / dex time on this device; > 1: dex is faster):\n");
  for (const char* m : kMethods) {
    if (best_model > 0) {
      table["model_speedup_vs"][m] = kPublishedModel.at(m) / best_model;
      std::printf("  model computation, dex %s vs %-14s %.3gx\n", dex_model[1] > 0 ? "fp16" : "fp32", m,
                  kPublishedModel.at(m) / best_model);
    }
    if (best_e2e > 0) {
      table["end2end_speedup_vs"][m] = kPublishedEnd2End.at(m) / best_e2e;
      std::printf("  end2end,           dex %s vs %-14s %.3gx\n", dex_e2e[1] > 0 ? "fp16" : "fp32", m,
                  kPublishedEnd2End.at(m) / best_e2e);
    }
  }
  const bool floor_grid = !model_row[0].empty() && model_row[0].find(" 128x128x128 ") != std::string::npos;
  for (int i = 0; i < 2 && floor_grid; ++i)
    if (dex_model[i] > 0) {
      const double frac = kH100FloorMs / dex_model[i];
      table["fraction_of_h100_floor"][i ? "fp16" : "fp32"] = frac;
      std::printf("  model computation dex %s: %.3g%% of the %.2f ms H100 floor (floor / time)\n", i ? "fp16" : "fp32",
                  100 * frac, kH100FloorMs);
    }
  if (!torch.is_null())
    for (const char* tr : {"eager_fp32", "eager_fp32_strict", "eager_fp32_cl", "amp", "amp_cl", "half_cl"}) {
      const double t = torch_row(tr);
      if (t <= 0 || best_model <= 0) continue;
      table["model_speedup_vs_torch_same_device"][tr] = t / best_model;
      std::printf("  model computation, dex %s vs PyTorch %s on this device (%.2f ms): %.2fx\n",
                  dex_model[1] > 0 ? "fp16" : "fp32", tr, t, t / best_model);
    }
  out["bundle_table"] = table;
  if (out.contains("accuracy")) std::printf("\nfp16 accuracy: %s\n", out["accuracy"].dump().c_str());

  if (!tmp_model.empty()) {
    if (a.has("save_model"))
      fs::copy_file(tmp_model, a.get("save_model"), fs::copy_options::overwrite_existing);
    fs::remove(tmp_model);
  }
  if (!p512.empty()) {
    if (a.has("save_model"))  // keep the phantom beside the model for file-to-file runs
      fs::copy_file(p512, fs::path(a.get("save_model")).parent_path() / "phantom_512x512x100.nii.gz",
                    fs::copy_options::overwrite_existing);
    fs::remove(p512);
  }
  if (a.has("out")) {
    const std::string path = a.get("out");
    std::ofstream f(path);
    DEX_INPUT_CHECK(f.good(), "--out '", path, "' cannot be written");
    f << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // rows appear as they finish, also when a time limit kills the run
  try {
    return run(argc, argv);
  } catch (const InputError& e) {
    std::cerr << "dex-bench: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "dex-bench: error: " << e.what() << "\n";
    return 1;
  }
}
