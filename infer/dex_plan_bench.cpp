// dex-plan-bench: the inference plan against the tape forward (time per forward, activation memory, agreement of
// the logits), plus the plan's memory for f32 and f16 at the chosen size.
//   dex-plan-bench [--size 128] [--runs 1] [--seed 1] [--device cpu|cuda] [--precision f32|f16] [--no-tape]
//                  [--schedule]
// The bundle's DynUNet with seeded Kaiming weights and a seeded uniform [0,1) input. The tape (f32, same device)
// runs first, then the plan (one at a time: the tape's arena is freed before the plan is built). CPU: wall and
// process CPU time of one forward (on a shared machine wall time mostly measures the neighbours). CUDA: the plan
// is warmed up once (graph capture), then each timed run is one graph launch + stream synchronise, median of --runs.
// Agreement: f32 reports bitwise equality and the largest difference, f16 the logits' relative L2 error and the
// Dice of the argmax masks (label 1) against the tape's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "infer/inference_plan.h"
#include "kernels/backend.h"
#include "kernels/rng.h"

using namespace dex;
using Clock = std::chrono::steady_clock;

namespace {
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }
double cpu_s() { return double(std::clock()) / CLOCKS_PER_SEC; }  // process CPU seconds, all threads
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double gib(size_t b) { return double(b) / double(1 << 30); }
const char* kUsage =
    "dex-plan-bench [--size S] [--runs N] [--seed S] [--device cpu|cuda] [--precision f32|f16] [--no-tape] "
    "[--schedule]";
}  // namespace

int main(int argc, char** argv) {
  try {
    int size = 128, runs = 1;
    uint64_t seed = 1;
    bool show_schedule = false, with_tape = true;
    Device device = Device::CPU;
    DType precision = DType::F32;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw InputError(a + " needs a value (" + kUsage + ")");
        return argv[++i];
      };
      if (a == "--size") size = std::stoi(next());
      else if (a == "--runs") runs = std::max(1, std::stoi(next()));
      else if (a == "--seed") seed = std::stoull(next());
      else if (a == "--schedule") show_schedule = true;
      else if (a == "--no-tape") with_tape = false;
      else if (a == "--device") {
        const std::string d = next();
        if (d != "cpu" && d != "cuda") throw InputError("--device must be cpu or cuda, got " + d);
        device = d == "cuda" ? Device::CUDA : Device::CPU;
      } else if (a == "--precision") {
        const std::string p = next();
        if (p != "f32" && p != "f16") throw InputError("--precision must be f32 or f16, got " + p);
        precision = p == "f16" ? DType::F16 : DType::F32;
      } else {
        throw InputError("unknown argument " + a + " (" + kUsage + ")");
      }
    }
    const Int3 sp{size, size, size};
    DynUNet net;
    net.init(seed);
    for (DType dt : {DType::F32, DType::F16}) {
      PlanOptions o;
      o.device = dt == DType::F16 ? Device::CUDA : device;
      o.precision = dt;
      PlanSchedule s = build_plan_schedule(net.config(), sp, o);
      std::printf("plan %s %d^3 (%s): activations %.3f GiB (lower bound %.3f, without reuse %.3f), stats %.1f KiB, "
                  "weights %.1f MiB, workspace %.1f MiB, total %.3f GiB\n",
                  dtype_name(dt), size, device_name(o.device), gib(s.memory.activations),
                  gib(s.memory.activations_lower_bound), gib(s.memory.activations_no_reuse), s.memory.stats / 1024.0,
                  s.memory.weights / double(1 << 20), s.memory.workspace / double(1 << 20), gib(s.memory.total()));
      if (show_schedule && dt == precision) std::printf("%s", s.describe().c_str());
    }
    const Backend& be = backend(device);
    const int64_t nin = int64_t(size) * size * size * 3;
    std::vector<float> x(static_cast<size_t>(nin));
    for (int64_t i = 0; i < nin; ++i) x[i] = rng_uniform(seed, rng_stream(RngStream::Test), i);

    std::vector<float> ref;
    if (with_tape) {
      std::vector<double> t, c;
      size_t peak = 0;
      for (int r = 0; r < runs; ++r) {
        Arena arena(*be.allocator, 0, "tape");
        Tape tape(arena, device);
        NoGradGuard ng(tape);
        Tensor in = tape.alloc(ndhwc(1, size, size, size, 3), false);
        be.copy(in.data, device, x.data(), Device::CPU, x.size() * sizeof(float), nullptr);
        be.synchronize(nullptr);
        auto t0 = Clock::now();
        const double c0 = cpu_s();
        Tensor y = net.forward(tape, in);
        be.synchronize(nullptr);
        t.push_back(ms_since(t0));
        c.push_back(cpu_s() - c0);
        peak = arena.peak();
        ref.resize(size_t(y.numel()));
        be.copy(ref.data(), Device::CPU, y.data, device, ref.size() * sizeof(float), nullptr);
      }
      std::printf("tape forward %d^3 f32 (%s): median %.1f ms of %d (CPU time %.1f s), arena peak %.3f GiB\n", size,
                  device_name(device), median(t), runs, median(c), gib(peak));
    }
    PlanOptions o;
    o.device = device;
    o.precision = precision;
    auto t0 = Clock::now();
    InferencePlan plan(net, sp, o);
    const double build_ms = ms_since(t0);
    be.copy(plan.input(), device, x.data(), Device::CPU, x.size() * sizeof(float), nullptr);
    if (device == Device::CUDA) plan.run();  // warm-up: captures the CUDA graph
    std::vector<double> t, c;
    for (int r = 0; r < runs; ++r) {
      auto t1 = Clock::now();
      const double c0 = cpu_s();
      plan.run();
      t.push_back(ms_since(t1));
      c.push_back(cpu_s() - c0);
    }
    std::printf("plan forward %d^3 %s (%s): median %.1f ms of %d (CPU time %.1f s; build %.0f ms), arena %.3f GiB, "
                "total %.3f GiB\n", size, dtype_name(precision), device_name(device), median(t), runs, median(c),
                build_ms, gib(plan.memory().activations), gib(plan.memory().total()));
    if (!with_tape) return 0;
    const std::vector<float> got = plan.logits_host();
    if (precision == DType::F32) {
      const bool same = std::memcmp(ref.data(), got.data(), ref.size() * sizeof(float)) == 0;
      double worst = 0;
      for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, double(std::abs(ref[i] - got[i])));
      std::printf("logits plan vs tape: %s (max |diff| %.3g)\n", same ? "bitwise equal" : "not bitwise equal", worst);
      return 0;
    }
    double err = 0, nrm = 0, inter = 0, a = 0, b = 0;
    for (size_t v = 0; v < ref.size() / 2; ++v) {
      for (int k = 0; k < 2; ++k) {
        const double d = double(got[2 * v + k]) - ref[2 * v + k];
        err += d * d;
        nrm += double(ref[2 * v + k]) * ref[2 * v + k];
      }
      const bool mr = ref[2 * v + 1] > ref[2 * v], mg = got[2 * v + 1] > got[2 * v];
      inter += mr && mg;
      a += mr;
      b += mg;
    }
    std::printf("logits f16 plan vs f32 tape: relative L2 error %.3g, mask Dice %.6f (%.0f vs %.0f voxels)\n",
                std::sqrt(err / nrm), a + b > 0 ? 2 * inter / (a + b) : 1.0, a, b);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dex-plan-bench: %s\n", e.what());
    return 1;
  }
}
