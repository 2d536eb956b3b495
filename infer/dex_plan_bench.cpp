// dex-plan-bench: the inference plan against the tape forward (time per forward, activation memory, agreement of
// the logits), plus the plan's memory for f32 and f16 at the chosen size.
//   dex-plan-bench [--size 128] [--runs 1] [--seed 1] [--device cpu|cuda] [--precision f32|f16] [--no-tape]
//                  [--schedule] [--unfused] [--table] [--warmup 10]
// The bundle's DynUNet with seeded Kaiming weights and a seeded uniform [0,1) input. The tape (f32, same device)
// runs first, then the plan (one at a time: the tape's arena is freed before the plan is built). CPU: wall and
// process CPU time of one forward (on a shared machine wall time mostly measures the neighbours). CUDA: the plan
// is captured, replayed --warmup times, then --runs graph replays are each timed with CUDA events (median).
// --unfused: the f16 plan runs the unfused kernels (PlanOptions::fused = false). --table (CUDA): the f32 plan, the
// unfused f16 plan and the fused f16 plan, one after the other on the same input, each timed as above, with the
// fraction of the H100 floor each reaches (1.23 ms at 128^3, issue 8: per conv layer the larger of its arithmetic
// time at 989 TFLOP/s and its fp16 traffic at 3.35 TB/s), and the agreement of the f16 plans with the f32 plan and
// with each other (logits relative L2 error, mask Dice). No tape in --table.
// Agreement: f32 reports bitwise equality and the largest difference, f16 the logits' relative L2 error and the
// Dice of the argmax masks (label 1) against the tape's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
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
    "[--schedule] [--unfused] [--table] [--warmup W]";
constexpr double kFloorMs128 = 1.23;  // H100 SXM floor of one 128^3 forward (issue 8)

double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double err = 0, nrm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    err += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    nrm += double(ref[i]) * ref[i];
  }
  return std::sqrt(err / nrm);
}
double dice1(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double inter = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    inter += a[i] == 1 && b[i] == 1;
    na += a[i] == 1;
    nb += b[i] == 1;
  }
  return na + nb > 0 ? 2 * inter / (na + nb) : 1.0;
}

// --table: f32, f16 unfused, f16 fused CUDA plans, one at a time, timed by graph replays with CUDA events.
int gpu_table(const DynUNet& net, int size, const std::vector<float>& x, int warmup, int runs) {
  const Int3 sp{size, size, size};
  struct Row {
    const char* name;
    DType precision;
    bool fused;
  };
  const Row rows[] = {{"f32", DType::F32, false}, {"f16 unfused", DType::F16, false}, {"f16 fused", DType::F16, true}};
  std::vector<std::vector<float>> logits;
  std::vector<std::vector<uint8_t>> masks;
  const double floor_ms = kFloorMs128 * std::pow(size / 128.0, 3);  // the floor scales with the voxel count
  std::printf("model computation %d^3 on CUDA, %d warm-up + %d timed graph replays (CUDA events), median:\n", size,
              warmup, runs);
  for (const Row& r : rows) {
    PlanOptions o;
    o.device = Device::CUDA;
    o.precision = r.precision;
    o.fused = r.fused;
    InferencePlan plan(net, sp, o);
    plan.upload(x.data());
    // The f32 plan runs the reference direct convolutions (~1.2 s a forward at 128^3 on an H100): 1 warm-up and at
    // most 3 timed replays keep the table inside a GPU session's minutes.
    const bool slow = r.precision == DType::F32;
    std::vector<double> t = plan.replay_times_ms(slow ? std::min(warmup, 1) : warmup, slow ? std::min(runs, 3) : runs);
    const double med = median(t);
    std::printf("  %-12s %8.3f ms (min %.3f, %zu runs)  floor %.3f ms = %5.1f%% of this time   memory %.3f GiB%s\n",
                r.name, med, *std::min_element(t.begin(), t.end()), t.size(), floor_ms, 100 * floor_ms / med,
                gib(plan.memory().total()),
                r.precision == DType::F16 && plan.fused() != r.fused ? "  (DEX_PLAN_UNFUSED=1 overrides)" : "");
    logits.push_back(plan.logits_host());
    masks.push_back(plan.mask_host());
  }
  std::printf("agreement: f16 unfused vs f32: logits rel. L2 %.3g, mask Dice %.6f\n", rel_l2(logits[1], logits[0]),
              dice1(masks[1], masks[0]));
  std::printf("           f16 fused vs f32:   logits rel. L2 %.3g, mask Dice %.6f\n", rel_l2(logits[2], logits[0]),
              dice1(masks[2], masks[0]));
  std::printf("           f16 fused vs unfused: logits rel. L2 %.3g, mask Dice %.6f\n", rel_l2(logits[2], logits[1]),
              dice1(masks[2], masks[1]));
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // rows appear as they finish, also when a time limit kills the run
  try {
    int size = 128, runs = 1, warmup = 10;
    uint64_t seed = 1;
    bool show_schedule = false, with_tape = true, unfused = false, table = false;
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
      else if (a == "--unfused") unfused = true;
      else if (a == "--table") table = true;
      else if (a == "--warmup") warmup = std::max(0, std::stoi(next()));
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

    if (table) {
      if (device != Device::CUDA) throw InputError("--table times CUDA plans: add --device cuda");
      return gpu_table(net, size, x, warmup, runs);
    }
    std::vector<float> ref;
    if (with_tape) {
      // The tape runs on `device`: a device copy of the network (the plans pack their own copies of the weights).
      std::unique_ptr<DynUNet> dev_net;
      if (device != Device::CPU) {
        dev_net = std::make_unique<DynUNet>(net.config(), device);
        be.copy(dev_net->parameters().values(), device, net.parameters().values(), Device::CPU,
                net.parameters().bytes(), nullptr);
        be.synchronize(nullptr);
      }
      const DynUNet& tape_net = dev_net ? *dev_net : net;
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
        Tensor y = tape_net.forward(tape, in);
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
    o.fused = !unfused;
    auto t0 = Clock::now();
    InferencePlan plan(net, sp, o);
    const double build_ms = ms_since(t0);
    plan.upload(x.data());
    std::vector<double> t, c;
    if (device == Device::CUDA) t = plan.replay_times_ms(warmup, runs);  // CUDA events around graph replays
    for (int r = 0; r < runs && device != Device::CUDA; ++r) {
      auto t1 = Clock::now();
      const double c0 = cpu_s();
      plan.run();
      t.push_back(ms_since(t1));
      c.push_back(cpu_s() - c0);
    }
    std::printf("plan forward %d^3 %s%s (%s): median %.3f ms of %d (CPU time %.1f s; build %.0f ms), arena %.3f GiB, "
                "total %.3f GiB\n", size, dtype_name(precision), precision == DType::F16 ? (plan.fused() ? " fused" : " unfused") : "",
                device_name(device), median(t), runs, median(c), build_ms, gib(plan.memory().activations),
                gib(plan.memory().total()));
    if (device == Device::CUDA)
      std::printf("H100 floor %.3f ms = %.1f%% of this time\n", kFloorMs128 * std::pow(size / 128.0, 3),
                  100 * kFloorMs128 * std::pow(size / 128.0, 3) / median(t));
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
