// dex-plan-bench: the inference plan against the tape forward on the CPU (time per forward, activation memory,
// and whether the logits agree bit for bit), plus the plan's memory for f32 and f16 at the chosen size.
//   dex-plan-bench [--size 128] [--runs 1] [--seed 1] [--schedule]
// The bundle's DynUNet with seeded Kaiming weights and a seeded uniform [0,1) input. Runs tape first, then plan
// (one at a time: the tape's arena is freed before the plan is built).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "infer/inference_plan.h"
#include "kernels/rng.h"

using namespace dex;
using Clock = std::chrono::steady_clock;

namespace {
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
// Process CPU seconds (all threads): on a shared machine wall time mostly measures the neighbours.
double cpu_s() { return double(std::clock()) / CLOCKS_PER_SEC; }
double gib(size_t b) { return double(b) / double(1 << 30); }
}  // namespace

int main(int argc, char** argv) {
  try {
    int size = 128, runs = 1;
    uint64_t seed = 1;
    bool show_schedule = false;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw InputError(a + " needs a value");
        return argv[++i];
      };
      if (a == "--size") size = std::stoi(next());
      else if (a == "--runs") runs = std::max(1, std::stoi(next()));
      else if (a == "--seed") seed = std::stoull(next());
      else if (a == "--schedule") show_schedule = true;
      else throw InputError("unknown argument " + a + " (dex-plan-bench [--size S] [--runs N] [--seed S] [--schedule])");
    }
    const Int3 sp{size, size, size};
    DynUNet net;
    net.init(seed);
    for (DType dt : {DType::F32, DType::F16}) {
      PlanOptions o;
      o.device = dt == DType::F16 ? Device::CUDA : Device::CPU;
      o.precision = dt;
      PlanSchedule s = build_plan_schedule(net.config(), sp, o);
      std::printf("plan %s %d^3 (%s): activations %.3f GiB (lower bound %.3f, without reuse %.3f), stats %.1f KiB, "
                  "weights %.1f MiB, workspace %.1f MiB, total %.3f GiB\n",
                  dtype_name(dt), size, device_name(o.device), gib(s.memory.activations),
                  gib(s.memory.activations_lower_bound), gib(s.memory.activations_no_reuse), s.memory.stats / 1024.0,
                  s.memory.weights / double(1 << 20), s.memory.workspace / double(1 << 20), gib(s.memory.total()));
      if (show_schedule && dt == DType::F32) std::printf("%s", s.describe().c_str());
    }
    const int64_t nin = int64_t(size) * size * size * 3;
    std::vector<float> x(static_cast<size_t>(nin));
    for (int64_t i = 0; i < nin; ++i) x[i] = rng_uniform(seed, rng_stream(RngStream::Test), i);

    std::vector<float> ref;
    {
      std::vector<double> t, c;
      size_t peak = 0;
      for (int r = 0; r < runs; ++r) {
        Arena arena;
        Tape tape(arena);
        NoGradGuard ng(tape);
        Tensor in = tape.alloc(ndhwc(1, size, size, size, 3), false);
        std::memcpy(in.data, x.data(), x.size() * sizeof(float));
        auto t0 = Clock::now();
        const double c0 = cpu_s();
        Tensor y = net.forward(tape, in);
        t.push_back(ms_since(t0));
        c.push_back(cpu_s() - c0);
        peak = arena.peak();
        ref.assign(y.data, y.data + y.numel());
      }
      std::printf("tape forward %d^3: median %.0f ms of %d (CPU time %.1f s), arena peak %.3f GiB\n", size, median(t),
                  runs, median(c), gib(peak));
    }
    {
      auto t0 = Clock::now();
      InferencePlan plan(net, sp);
      const double build_ms = ms_since(t0);
      std::vector<double> t, c;
      for (int r = 0; r < runs; ++r) {
        std::memcpy(plan.input(), x.data(), x.size() * sizeof(float));
        auto t1 = Clock::now();
        const double c0 = cpu_s();
        plan.run();
        t.push_back(ms_since(t1));
        c.push_back(cpu_s() - c0);
      }
      std::printf("plan forward %d^3: median %.0f ms of %d (CPU time %.1f s; build %.0f ms), arena %.3f GiB, total "
                  "%.3f GiB\n", size, median(t), runs, median(c), build_ms, gib(plan.memory().activations),
                  gib(plan.memory().total()));
      const bool same = std::memcmp(ref.data(), plan.logits(), ref.size() * sizeof(float)) == 0;
      double worst = 0;
      for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, double(std::abs(ref[i] - plan.logits()[i])));
      std::printf("logits plan vs tape: %s (max |diff| %.3g)\n", same ? "bitwise equal" : "DIFFERENT", worst);
      return same ? 0 : 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dex-plan-bench: %s\n", e.what());
    return 1;
  }
}
