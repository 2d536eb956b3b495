// dex-bench: whole-model and end-to-end timings, the rows of the bundle's TensorRT table next to dex's.
//   model computation: one forward of the DynUNet on a random 1x3xS^3 input (no pre/post), median of --runs
//   end to end in memory: Segmenter::set_image + segment (volume in memory -> mask in memory)
//   end to end file to file: read NIfTI -> ... -> write NIfTI (as the bundle's end2end row)
//   click: one additional click with a loaded Segmenter and a set image
// Results print as a markdown table and go to --out (JSON) when given.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
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

namespace fs = std::filesystem;
using namespace dex;
using Clock = std::chrono::steady_clock;

namespace {

const char* kUsage = R"(dex-bench: model computation and end-to-end timings (median of --runs after one warm-up).
  dex-bench [--device cpu|cuda] [--runs N] [--model M] [--image CT.nii.gz] [--phantom512] [--size 128]
            [--what model,e2e,click] [--out results.json]
  --model       a model file; default: the bundle's network with seeded random weights (written to a temp file)
  --image       a CT for the end-to-end rows (default: the real case in ../shared, when present)
  --phantom512  also time a 512x512x100 phantom end to end
  --save-model  keep the seeded random model at this path (for dex-infer --timing runs)
)";

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

template <class F>
std::vector<double> repeat(int runs, F&& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    f();
    t.push_back(ms_since(t0));
  }
  return t;
}
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

int run(int argc, char** argv) {
  ParsedArgs a = parse_args(argc, argv, {"device", "runs", "model", "image", "size", "what", "out", "save_model"},
                            {"help", "phantom512"});
  if (a.has("help")) {
    std::cout << kUsage;
    return 0;
  }
  Device dev = a.get("device", "cpu") == "cuda" ? Device::CUDA : Device::CPU;
  int runs = std::stoi(a.get("runs", "3"));
  int S = std::stoi(a.get("size", "128"));
  std::string what = a.get("what", "model,e2e,click");
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
  nlohmann::ordered_json out;
  out["device"] = device_name(dev);
  out["runs"] = runs;
  std::printf("| row | median ms | runs |\n|---|---|---|\n");
  auto row = [&](const std::string& name, const std::vector<double>& t) {
    double m = median(t);
    std::printf("| %s | %.1f | %zu |\n", name.c_str(), m, t.size());
    std::fflush(stdout);
    out["rows"][name] = {{"median_ms", m}, {"all_ms", t}};
  };

  if (what.find("model") != std::string::npos) {
    LoadedModel lm = load_model(model);
    DynUNet net(lm.info.arch, dev);
    load_weights_into(net, lm, model);
    std::vector<float> x(size_t(S) * S * S * 3);
    for (size_t i = 0; i < x.size(); ++i) x[i] = rng_uniform(7, 1, i);
    {  // the training-time path: the tape (no-grad), a growing arena
      const Backend& be = backend(dev);
      Arena arena(*be.allocator, 0, "bench");
      auto t = repeat(runs, [&] {
        arena.reset();
        Tape tape(arena, dev);
        NoGradGuard ng(tape);
        Tensor in = tape.alloc(ndhwc(1, S, S, S, 3), false);
        be.copy(in.data, dev, x.data(), Device::CPU, x.size() * 4, nullptr);
        Tensor y = net.forward(tape, in);
        be.synchronize(nullptr);
        (void)y;
      });
      row(str("model computation fp32 ", S, "^3 (tape)"), t);
      out["tape_arena_peak_bytes"] = arena.peak();
    }
    for (DType prec : {DType::F32, DType::F16}) {  // the inference path: the plan (CUDA: one graph replay)
      if (prec == DType::F16 && dev != Device::CUDA) continue;
      PlanOptions po;
      po.device = dev;
      po.precision = prec;
      po.keep_input = true;  // every run sees the same input (a reused input buffer would feed garbage)
      InferencePlan plan(net, Int3{S, S, S}, po);
      plan.upload(x.data());
      auto t = repeat(runs, [&] { plan.run(); });
      row(str("model computation ", prec == DType::F16 ? "fp16 " : "fp32 ", S, "^3 (plan)"), t);
      out["plan_bytes"][dtype_name(prec)] = plan.memory().total();
    }
  }

  SegmenterOptions so;
  so.device = dev;
  std::vector<std::pair<std::string, std::string>> images;  // name, path
  std::string real = a.get("image", std::string(DEX_SOURCE_DIR) + "/../shared/data/real-ct/imagesTr/case_a.nii.gz");
  if (fs::exists(real)) images.push_back({"real CT " + fs::path(real).filename().string(), real});
  std::string p512;
  if (a.has("phantom512")) {
    NiftiMeta meta;
    Volume v = phantom_512x512x100(&meta);
    p512 = (fs::temp_directory_path() / ("dex_bench_p512_" + std::to_string(::getpid()) + ".nii.gz")).string();
    write_nifti(p512, v, NiftiDType::I16, nullptr);
    images.push_back({"phantom 512x512x100", p512});
  }
  if (what.find("e2e") != std::string::npos || what.find("click") != std::string::npos) {
    Segmenter seg(model, so);
    for (auto& [name, path] : images) {
      Volume v = read_nifti(path);
      if (what.find("e2e") != std::string::npos) {
        row("end to end in memory, " + name, repeat(runs, [&] {
              seg.set_image(v);
              seg.segment({});
            }));
        std::string outp = (fs::temp_directory_path() / "dex_bench_out.nii.gz").string();
        row("end to end file to file, " + name, repeat(runs, [&] {
              NiftiMeta m;
              Volume vv = read_nifti(path, &m);
              seg.set_image(vv);
              Segmentation r = seg.segment({});
              write_nifti(outp, r.mask, &m);
            }));
        fs::remove(outp);
        StageTimer st = seg.last_timings();
        for (auto& s : st.stages()) out["stages_ms"][name][s.first] = s.second;
      }
      if (what.find("click") != std::string::npos) {
        seg.set_image(v);
        Clicks c;
        c.spleen.push_back({double(v.shape[0] / 2), double(v.shape[1] / 2), double(v.shape[2] / 2)});
        row("one click (loaded Segmenter), " + name, repeat(runs, [&] { seg.segment(c); }));
      }
    }
  }
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
    std::ofstream f(a.get("out"));
    f << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
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
