#include "train/trainer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <limits>
#include <set>

#include "autograd/tape.h"
#include "data/augment.h"
#include "data/click_guidance.h"
#include "data/resize.h"
#include "kernels/backend.h"
#include "kernels/json_int.h"
#include "layers/model_file.h"
#include "train/adam_optimizer.h"
#include "train/grad_buckets.h"
#include "train/loss_scaler.h"
#include "train/train_step.h"
#include "train/training_state.h"

namespace dex {

// ---- config -----------------------------------------------------------------------------------------------------

namespace {

using json = nlohmann::json;

const std::set<std::string>& known_keys() {
  static const std::set<std::string> k = {
      "bucket_mb",
      "dataset_dir", "output_dir", "label_names", "spatial_size", "label_resize", "guidance_sigma", "filters",
      "strides", "kernel_sizes", "upsample_kernel_sizes", "learning_rate", "lr_step_size", "lr_gamma", "max_epochs",
      "val_interval", "num_val", "max_train_cases", "steps_per_epoch", "batch_size", "amp", "amp_emulate", "cache_rate",
      "num_workers", "deepgrow_probability_train", "deepgrow_probability_val", "max_interactions", "seed", "device",
      "progress", "comment"};
  return k;
}

[[noreturn]] void bad(const std::string& name, const std::string& key, const json& v, const std::string& want) {
  throw InputError(str(name, ": '", key, "' = ", v.dump(), " is not ", want));
}

// An integer in [lo, hi] (hi: where a larger value would overflow or be truncated on the way, or cannot be meant).
int64_t get_int(const json& j, const std::string& name, const char* key, int64_t lo, int64_t def,
                int64_t hi = std::numeric_limits<int64_t>::max()) {
  if (!j.contains(key)) return def;
  const json& v = j[key];
  if (!json_int_in(v, lo, hi)) {
    if (hi == std::numeric_limits<int64_t>::max()) bad(name, key, v, str("an integer >= ", lo));
    bad(name, key, v, str("an integer in [", lo, ", ", hi, "]"));
  }
  return v.get<int64_t>();
}

double get_double(const json& j, const std::string& name, const char* key, double lo, double hi, double def) {
  if (!j.contains(key)) return def;
  const json& v = j[key];
  if (!v.is_number() || !(v.get<double>() >= lo && v.get<double>() <= hi))
    bad(name, key, v, str("a number in [", lo, ", ", hi, "]"));
  return v.get<double>();
}

bool get_bool(const json& j, const std::string& name, const char* key, bool def) {
  if (!j.contains(key)) return def;
  if (!j[key].is_boolean()) bad(name, key, j[key], "true or false");
  return j[key].get<bool>();
}

std::string get_string(const json& j, const std::string& name, const char* key, const std::string& def) {
  if (!j.contains(key)) return def;
  if (!j[key].is_string()) bad(name, key, j[key], "a string");
  return j[key].get<std::string>();
}

// [a, b, c] or a (-> [a, a, a]), each in [1, 1024] (sizes, strides and kernels: 1024 is already absurd for any).
Int3 to_int3(const json& v, const std::string& name, const std::string& key) {
  constexpr int64_t kMax = 1024;
  auto in_range = [](const json& e) { return json_int_in(e, 1, kMax); };
  const char* want = "an integer or a list of 3 integers in [1, 1024]";
  Int3 r;
  if (v.is_number()) {
    if (!in_range(v)) bad(name, key, v, want);
    r = {int(v.get<int64_t>()), int(v.get<int64_t>()), int(v.get<int64_t>())};
    return r;
  }
  if (!v.is_array() || v.size() != 3) bad(name, key, v, want);
  for (int a = 0; a < 3; ++a) {
    if (!in_range(v[a])) bad(name, key, v, want);
    r[a] = static_cast<int>(v[a].get<int64_t>());
  }
  return r;
}

std::vector<Int3> get_int3_list(const json& j, const std::string& name, const char* key, std::vector<Int3> def) {
  if (!j.contains(key)) return def;
  const json& v = j[key];
  if (!v.is_array() || v.empty()) bad(name, key, v, "a non-empty list");
  std::vector<Int3> out;
  for (const auto& e : v) out.push_back(to_int3(e, name, key));
  return out;
}

}  // namespace

TrainConfig train_config_from_json(const json& j, const std::string& name) {
  DEX_INPUT_CHECK(j.is_object(), name, ": a training config must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known_keys().count(it.key())) {
      std::string known;
      for (const auto& k : known_keys()) known += " " + k;
      throw InputError(str(name, ": unknown key '", it.key(), "' (known:", known, ")"));
    }
  TrainConfig c;
  c.dataset_dir = get_string(j, name, "dataset_dir", c.dataset_dir);
  c.output_dir = get_string(j, name, "output_dir", c.output_dir);
  c.device = get_string(j, name, "device", c.device);
  if (c.device != "cpu" && c.device != "cuda") bad(name, "device", j["device"], "\"cpu\" or \"cuda\"");
  if (j.contains("label_names")) {
    // {"spleen": 1, "background": 0}: JSON objects lose their order here, so the bundle's order is rebuilt:
    // the foreground labels by value, then background (spleen, background for the bundle).
    const json& v = j["label_names"];
    if (!v.is_object() || v.size() < 2) bad(name, "label_names", v, "an object of at least 2 names -> values");
    LabelNames fg, bg;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!json_int_in(it.value(), 0, 255))
        bad(name, "label_names", v, "an object of names -> integer values in [0, 255]");
      LabelName ln{it.key(), static_cast<int>(it.value().get<int64_t>())};
      (ln.is_background() ? bg : fg).push_back(ln);
    }
    if (bg.size() != 1) bad(name, "label_names", v, "an object with exactly one \"background\" entry");
    std::stable_sort(fg.begin(), fg.end(), [](const LabelName& a, const LabelName& b) { return a.value < b.value; });
    c.label_names = fg;
    c.label_names.push_back(bg[0]);
  }
  if (j.contains("spatial_size")) {
    const Int3 s = to_int3(j["spatial_size"], name, "spatial_size");
    c.spatial_size = {s[0], s[1], s[2]};
  }
  c.label_resize = parse_label_resize(get_string(j, name, "label_resize", label_resize_name(c.label_resize)), name);
  c.guidance_sigma = get_double(j, name, "guidance_sigma", 0.1, 100, c.guidance_sigma);
  DynUNetConfig& a = c.arch;
  if (j.contains("filters")) {
    const json& v = j["filters"];
    if (!v.is_array() || v.empty()) bad(name, "filters", v, "a non-empty list of integers in [1, 65536]");
    a.filters.clear();
    for (const auto& f : v) {
      if (!json_int_in(f, 1, 65536)) bad(name, "filters", v, "a list of integers in [1, 65536]");
      a.filters.push_back(static_cast<int>(f.get<int64_t>()));
    }
  }
  a.strides = get_int3_list(j, name, "strides", a.strides);
  a.kernel_sizes = get_int3_list(j, name, "kernel_sizes", a.kernel_sizes);
  a.upsample_kernel_sizes = get_int3_list(j, name, "upsample_kernel_sizes", a.upsample_kernel_sizes);
  a.in_channels = 1 + static_cast<int>(c.label_names.size());
  a.out_channels = static_cast<int>(c.label_names.size());
  try {
    a.validate();
  } catch (const InputError& e) {
    throw InputError(str(name, ": the network (filters, strides, kernel_sizes, upsample_kernel_sizes) is ",
                         "inconsistent: ", e.what()));
  }
  const Int3 ts = a.total_stride();
  for (int ax = 0; ax < 3; ++ax)
    DEX_INPUT_CHECK(c.spatial_size[ax] % ts[ax] == 0, name, ": spatial_size ", c.spatial_size[ax], " on axis ", ax,
                    " is not a multiple of the network's total stride ", ts[ax]);
  c.learning_rate = get_double(j, name, "learning_rate", 0, 10, c.learning_rate);
  c.lr_step_size = get_int(j, name, "lr_step_size", 1, c.lr_step_size);
  c.lr_gamma = get_double(j, name, "lr_gamma", 0, 1, c.lr_gamma);
  c.max_epochs = get_int(j, name, "max_epochs", 0, c.max_epochs);
  c.val_interval = get_int(j, name, "val_interval", 1, c.val_interval);
  c.num_val = get_int(j, name, "num_val", 0, c.num_val);
  c.max_train_cases = get_int(j, name, "max_train_cases", 0, c.max_train_cases);
  c.steps_per_epoch = get_int(j, name, "steps_per_epoch", 0, c.steps_per_epoch);
  c.batch_size = get_int(j, name, "batch_size", 1, c.batch_size, 4096);
  c.bucket_mb = get_double(j, name, "bucket_mb", 1e-6, 1e6, c.bucket_mb);
  c.amp = get_bool(j, name, "amp", c.amp);
  c.amp_emulate = get_bool(j, name, "amp_emulate", c.amp_emulate);
  c.cache_rate = get_double(j, name, "cache_rate", 0, 1, c.cache_rate);
  c.num_workers = static_cast<int>(get_int(j, name, "num_workers", 1, c.num_workers, 1024));
  c.deepgrow_probability_train = get_double(j, name, "deepgrow_probability_train", 0, 1, c.deepgrow_probability_train);
  c.deepgrow_probability_val = get_double(j, name, "deepgrow_probability_val", 0, 1, c.deepgrow_probability_val);
  c.max_interactions = static_cast<int>(get_int(j, name, "max_interactions", 1, c.max_interactions, 1000));
  c.seed = static_cast<uint64_t>(get_int(j, name, "seed", 0, static_cast<int64_t>(c.seed)));
  c.progress = get_bool(j, name, "progress", c.progress);
  return c;
}

json train_config_to_json(const TrainConfig& c) {
  json labels = json::object();
  for (const auto& l : c.label_names) labels[l.name] = l.value;
  auto list3 = [](const std::vector<Int3>& v) {
    json a = json::array();
    for (const auto& x : v) a.push_back({x[0], x[1], x[2]});
    return a;
  };
  return json{{"dataset_dir", c.dataset_dir},
              {"output_dir", c.output_dir},
              {"label_names", labels},
              {"spatial_size", {c.spatial_size[0], c.spatial_size[1], c.spatial_size[2]}},
              {"label_resize", label_resize_name(c.label_resize)},
              {"guidance_sigma", c.guidance_sigma},
              {"filters", c.arch.filters},
              {"strides", list3(c.arch.strides)},
              {"kernel_sizes", list3(c.arch.kernel_sizes)},
              {"upsample_kernel_sizes", list3(c.arch.upsample_kernel_sizes)},
              {"learning_rate", c.learning_rate},
              {"lr_step_size", c.lr_step_size},
              {"lr_gamma", c.lr_gamma},
              {"max_epochs", c.max_epochs},
              {"val_interval", c.val_interval},
              {"num_val", c.num_val},
              {"max_train_cases", c.max_train_cases},
              {"steps_per_epoch", c.steps_per_epoch},
              {"batch_size", c.batch_size},
              {"bucket_mb", c.bucket_mb},
              {"amp", c.amp},
              {"amp_emulate", c.amp_emulate},
              {"cache_rate", c.cache_rate},
              {"num_workers", c.num_workers},
              {"deepgrow_probability_train", c.deepgrow_probability_train},
              {"deepgrow_probability_val", c.deepgrow_probability_val},
              {"max_interactions", c.max_interactions},
              {"seed", c.seed},
              {"device", c.device},
              {"progress", c.progress}};
}

// ---- the trainer ------------------------------------------------------------------------------------------------

namespace {

// Validation samples use their own click-rng sample ids so they never collide with training ones.
constexpr uint64_t kValSampleBase = uint64_t(1) << 40;

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string hms(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  return buf;
}

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// One network-grid sample: NDHWC input (CT + one heatmap per label), the label, the clicks.
struct Sample {
  std::vector<float> input;
  LabelVolume label;
  Guidance guidance;
  uint64_t id = 0;  // click-rng sample id
  bool train = true;
  int first_forward = 0;  // the first interaction round that runs a no-grad forward (max_interactions: none)
};

}  // namespace

struct Trainer::Impl {
  Device device;
  DynUNet net;
  AdamOptimizer opt;
  LossScaler scaler;
  Arena arena;
  TrainStep step;
  TrainingCounters counters;
  std::unique_ptr<CaseCache> train_cache, val_cache;
  std::vector<EpochRecord> history;
  std::unique_ptr<GradBuckets> buckets;  // data parallel: the gradient all-reduce, overlapped with the backward

  Impl(const TrainConfig& c, Device dev)
      : device(dev),
        net(c.arch, dev),
        opt(net.parameters(), AdamParams()),
        scaler(LossScalerConfig{mixed_precision(c, dev)}),
        arena(*backend(dev).allocator, 0, "train step"),
        step(net, opt, scaler, arena) {
    if (mixed_precision(c, dev)) step.set_autocast(DType::F16);
  }
  static bool mixed_precision(const TrainConfig& c, Device dev) {
    return c.amp_emulate || (c.amp && dev == Device::CUDA);
  }
};

Trainer::Trainer(const TrainConfig& cfg, Communicator& comm) : m_cfg(cfg), m_comm(comm) {
  const Device dev = cfg.device == "cuda" ? Device::CUDA : Device::CPU;
  std::string why;
  DEX_INPUT_CHECK(backend_available(dev, &why), "device '", cfg.device, "' is not available: ", why);
  DEX_INPUT_CHECK(!cfg.dataset_dir.empty(), "no dataset_dir given (--dataset-dir DIR)");
  DEX_INPUT_CHECK(!cfg.output_dir.empty(), "no output_dir given (--output-dir DIR)");
  m = std::make_unique<Impl>(cfg, dev);
  m->net.init(cfg.seed);
  m->counters.rng = Rng(cfg.seed, rng_stream(RngStream::DataOrder));

  const auto items = list_training_items(cfg.dataset_dir);
  DatasetSplit split = split_train_val(items, cfg.num_val);
  if (cfg.max_train_cases > 0 && static_cast<int64_t>(split.train.size()) > cfg.max_train_cases)
    split.train.resize(static_cast<size_t>(cfg.max_train_cases));
  const LabelMapping mapping = make_label_mapping(cfg.label_names, read_dataset_labels(cfg.dataset_dir));
  m->train_cache = std::make_unique<CaseCache>(split.train, mapping, cfg.cache_rate, cfg.num_workers);
  m->val_cache = std::make_unique<CaseCache>(split.val, mapping, cfg.cache_rate, cfg.num_workers);
  m_cfg.label_names = mapping.normalized;
  if (m_comm.is_root()) {
    if (!is_dir(cfg.output_dir))
      DEX_INPUT_CHECK(mkdir(cfg.output_dir.c_str(), 0755) == 0 || is_dir(cfg.output_dir), "cannot create output_dir '",
                      cfg.output_dir, "' (does its parent exist?)");
  }
  m_comm.barrier();
}

Trainer::~Trainer() = default;

DynUNet& Trainer::model() { return m->net; }
int64_t Trainer::next_epoch() const { return m->counters.epoch; }
size_t Trainer::train_cases() const { return m->train_cache->size(); }
size_t Trainer::val_cases() const { return m->val_cache->size(); }
std::string Trainer::state_path() const { return m_cfg.output_dir + "/state_latest.safetensors"; }
std::string Trainer::model_path() const { return m_cfg.output_dir + "/model.safetensors"; }

void Trainer::resume(const std::string& path_in) {
  const std::string path = path_in.empty() ? state_path() : path_in;
  DEX_INPUT_CHECK(access(path.c_str(), R_OK) == 0, "cannot resume: training state '", path,
                  "' does not exist (a run writes it after its first epoch)");
  load_training_state(path, m->net, m->opt, m->scaler, m->counters);
  DEX_INPUT_CHECK(m->counters.epoch <= m_cfg.max_epochs || m_cfg.max_epochs == 0, "training state '", path,
                  "' is at epoch ", m->counters.epoch, ", beyond max_epochs ", m_cfg.max_epochs);
  // The history (and with it the best metric) is what metrics.jsonl says about the epochs the state has finished.
  m->history.clear();
  m_best_metric = -1;
  m_best_epoch = -1;
  for (const auto& r : read_metrics_jsonl(m_cfg.output_dir + "/metrics.jsonl")) {
    if (r.epoch > m->counters.epoch) continue;
    m->history.push_back(r);
    if (r.validated && std::isfinite(r.val_mean_dice) && r.val_mean_dice > m_best_metric) {
      m_best_metric = r.val_mean_dice;
      m_best_epoch = r.epoch;
    }
  }
}

namespace {

void set_heatmaps(Sample& s, const TrainConfig& c);

// The draw that decides whether interaction round j of sample `id` runs (a no-grad forward and new clicks) or zeroes
// the click channels: a pure function of the seed, the epoch, the sample and the round.
bool interaction_round_runs(const TrainConfig& c, bool train, int64_t epoch, uint64_t id, int j) {
  const double p = train ? c.deepgrow_probability_train : c.deepgrow_probability_val;
  const uint64_t key = id * static_cast<uint64_t>(c.max_interactions) + static_cast<uint64_t>(j);
  return rng_uniform_f64(c.seed, rng_stream(RngStream::Interaction, static_cast<uint64_t>(epoch)), key) < p;
}

// Builds one sample on the network grid from a prepared (oriented, windowed) case, with its click channels as the
// click round's first no-grad forward will see them: the initial clicks' heatmaps where that forward is round 0 (or
// there is no round), zeros where earlier rounds zero them (the rounds before the first forward need no weights, so
// they are done here, on the loader thread, off the training step's critical path).
Sample make_sample(const PreparedCase& pc, const TrainConfig& c, bool train, int64_t epoch, uint64_t index) {
  Volume image = pc.image;
  LabelVolume label = pc.label;
  if (train) {
    Rng arng = augment_rng(c.seed, static_cast<uint64_t>(epoch), index);
    apply_augment(draw_augment(arng), image, label);
  }
  const Shape3 ss = c.spatial_size;
  Volume img = resize_area(image, ss);
  Sample s;
  s.label = resize_label(label, ss, c.label_resize);
  s.id = train ? index : kValSampleBase + index;
  Rng crng = click_rng(c.seed, static_cast<uint64_t>(epoch), s.id, 0);
  s.guidance = initial_guidance(s.label, c.label_names, crng);
  const int C = 1 + static_cast<int>(c.label_names.size());
  const int64_t n = img.size();
  s.input.assign(static_cast<size_t>(n * C), 0.f);
  for (int64_t v = 0; v < n; ++v) s.input[v * C] = img.data[v];
  s.train = train;
  s.first_forward = 0;
  while (s.first_forward < c.max_interactions && !interaction_round_runs(c, train, epoch, s.id, s.first_forward))
    ++s.first_forward;
  if (s.first_forward == 0) set_heatmaps(s, c);  // else the click channels are zero, as the zeroing rounds leave them
  return s;
}

// The heatmaps of s.guidance (guidance_heatmaps' values), written straight into the interleaved click channels: no
// 128^3 temporaries, whose page faults cost more than the smoothing itself.
void set_heatmaps(Sample& s, const TrainConfig& c) {
  const int C = 1 + static_cast<int>(c.label_names.size());
  const auto& ss = c.spatial_size;
  const std::array<int, 3> shape{static_cast<int>(ss[0]), static_cast<int>(ss[1]), static_cast<int>(ss[2])};
  for (size_t l = 0; l < s.guidance.size(); ++l)
    gaussian_heatmap_into(guidance_points(s.guidance[l]), shape, s.input.data() + 1 + l, C,
                          static_cast<float>(c.guidance_sigma));
}

void zero_heatmaps(Sample& s, const TrainConfig& c) {
  const int C = 1 + static_cast<int>(c.label_names.size());
  const int64_t n = s.label.size();
  for (int64_t v = 0; v < n; ++v)
    for (int ch = 1; ch < C; ++ch) s.input[v * C + ch] = 0.f;
}

}  // namespace

// out[v] = argmax over the C channels of the `voxels` logits on the device (torch's ties and NaN rule), taken where
// the logits are so that a GPU sends back 1 byte per voxel instead of C floats; scratch from `arena`, released after.
static void argmax_to_host(Trainer::Impl& m, const float* logits, int64_t voxels, int C, uint8_t* out) {
  const Backend& be = backend(m.device);
  const size_t mark = m.arena.mark();
  auto* labels = m.arena.alloc<uint8_t>(static_cast<size_t>(voxels));
  be.argmax(voxels, C, logits, labels, nullptr);
  be.copy(out, Device::CPU, labels, m.device, static_cast<size_t>(voxels), nullptr);
  be.synchronize(nullptr);
  m.arena.release_to(mark);
}

// No-grad forward of one sample: argmax prediction on the grid (the arena is reset before and after).
static LabelVolume predict_grid(Trainer::Impl& m, const TrainConfig& c, const Sample& s, double* seconds = nullptr) {
  const auto t0 = Clock::now();
  const Backend& be = backend(m.device);
  m.arena.reset();
  LabelVolume pred;
  pred.shape = s.label.shape;
  pred.affine = s.label.affine;
  pred.data.resize(static_cast<size_t>(s.label.size()));
  {
    Tape tape(m.arena, m.device);
    tape.set_autocast(m.step.autocast());  // the bundle's Interaction runs its forward under autocast when amp
    NoGradGuard ng(tape);
    const auto& ss = c.spatial_size;
    Tensor x = tape.alloc(ndhwc(1, ss[0], ss[1], ss[2], c.arch.in_channels), false);
    be.copy(x.data, m.device, s.input.data(), Device::CPU, x.bytes(), nullptr);
    Tensor y = m.net.forward(tape, x);
    argmax_to_host(m, y.data, y.voxels(), y.C(), pred.data.data());
  }
  m.arena.reset();
  if (seconds) *seconds += seconds_since(t0);
  return pred;
}

// The bundle's Interaction (spec §8.2): per round, with probability p a no-grad forward, discrepancy, new clicks,
// pruning and new heatmaps; otherwise the click channels are zeroed. make_sample did the rounds before the first
// forward (they only zero) and left the input that forward sees; this runs the rest. `forward_s` accumulates the time
// of the no-grad forwards (upload, forward, download, argmax).
static void interact(Trainer::Impl& m, const TrainConfig& c, Sample& s, int64_t epoch, double* forward_s) {
  Rng crng = click_rng(c.seed, static_cast<uint64_t>(epoch), s.id, 1);
  for (int j = s.first_forward; j < c.max_interactions; ++j) {
    if (interaction_round_runs(c, s.train, epoch, s.id, j)) {
      // AddRandomGuidanceDeepEditd's probability 1 - j / max_interactions (always 1 in the first round).
      if (j > 0 && !(crng.uniform() < 1.0 - double(j) / c.max_interactions)) continue;
      const LabelVolume pred = predict_grid(m, c, s, forward_s);
      const auto disc = find_discrepancy_regions(s.label, pred, c.label_names);
      s.guidance = add_random_guidance(s.guidance, disc, s.label, c.label_names, crng);
      set_heatmaps(s, c);
    } else {
      zero_heatmaps(s, c);
    }
  }
}

ValidationResult Trainer::validate(int64_t epoch) {
  const auto order = sampler_indices(static_cast<int64_t>(m->val_cache->size()), m_cfg.seed, epoch, m_comm.rank(),
                                     m_comm.size(), false, false);
  // sums: spleen Dice, spleen count, mean Dice, mean count, cases
  double acc[5] = {0, 0, 0, 0, 0};
  uint8_t fg = 1;
  for (const auto& l : m_cfg.label_names)
    if (!l.is_background()) {
      fg = static_cast<uint8_t>(l.value);
      break;
    }
  for (int64_t idx : order) {
    auto pc = m->val_cache->get(static_cast<size_t>(idx));
    Sample s = make_sample(*pc, m_cfg, false, epoch, static_cast<uint64_t>(idx));
    interact(*m, m_cfg, s, epoch, nullptr);
    const LabelVolume pred = predict_grid(*m, m_cfg, s);
    const int64_t n = pred.size();
    const double ds = dice_score(pred.data.data(), s.label.data.data(), n, fg);
    const double dm = bundle_mean_dice(pred.data.data(), s.label.data.data(), n, m_cfg.arch.out_channels);
    if (std::isfinite(ds)) acc[0] += ds, acc[1] += 1;
    if (std::isfinite(dm)) acc[2] += dm, acc[3] += 1;
    acc[4] += 1;
  }
  m_comm.allreduce_sum(acc, 5);
  ValidationResult r;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.spleen_dice = acc[1] > 0 ? acc[0] / acc[1] : nan;
  r.mean_dice = acc[3] > 0 ? acc[2] / acc[3] : nan;
  r.cases = static_cast<int64_t>(acc[4]);
  return r;
}

EpochRecord Trainer::run_epoch(int64_t epoch) {
  const auto t0 = Clock::now();
  const TrainConfig& c = m_cfg;
  const bool root = m_comm.is_root();
  const double lr = c.learning_rate * std::pow(c.lr_gamma, static_cast<double>(epoch / c.lr_step_size));
  m->opt.set_lr(static_cast<float>(lr));
  if (m_comm.size() > 1 && !m->buckets && m_comm.accepts(m->device)) {
    const size_t bucket_bytes = std::max<size_t>(1, static_cast<size_t>(c.bucket_mb * 1024.0 * 1024.0));
    m->buckets = std::make_unique<GradBuckets>(m->net.parameters(), m_comm, bucket_bytes);
    m->step.tape().set_backward_hook(m->buckets->hook());
    if (root)
      std::fprintf(stderr, "data parallel: %d ranks (%s), %zu gradient bucket(s) of <= %g MiB, all-reduced during the "
                   "backward\n", m_comm.size(), m_comm.name().c_str(), m->buckets->buckets().size(), c.bucket_mb);
  }

  const auto order = sampler_indices(static_cast<int64_t>(m->train_cache->size()), c.seed, epoch, m_comm.rank(),
                                     m_comm.size(), true, true);
  const int64_t B = c.batch_size;
  int64_t steps = (static_cast<int64_t>(order.size()) + B - 1) / B;
  if (c.steps_per_epoch > 0) steps = std::min(steps, c.steps_per_epoch);
  const auto& ss = c.spatial_size;
  const int64_t nvox = ss[0] * ss[1] * ss[2];
  const int C = c.arch.in_channels;
  const Int3 spatial{int(ss[0]), int(ss[1]), int(ss[2])};
  const bool tty = isatty(2);

  EpochRecord rec;
  rec.epoch = epoch + 1;
  rec.lr = lr;
  // sums over the epoch: loss, dice, dice count, samples
  double acc[4] = {0, 0, 0, 0};
  std::vector<float> x;
  std::vector<uint8_t> target;
  std::vector<uint8_t> pred;
  // A step's samples (copy, augmentation, resize, initial clicks: a pure function of the case, the seed, the epoch and
  // the index) are made on a second thread while the previous step runs, as the bundle's DataLoader workers do; the
  // click round needs the current weights and runs in order on this thread.
  auto load = [&](int64_t st) {
    const int64_t first = st * B, N = std::min<int64_t>(B, static_cast<int64_t>(order.size()) - first);
    std::vector<Sample> batch;
    for (int64_t b = 0; b < N; ++b) {
      const uint64_t idx = static_cast<uint64_t>(order[static_cast<size_t>(first + b)]);
      batch.push_back(make_sample(*m->train_cache->get(idx), c, true, epoch, idx));
    }
    return batch;
  };
  std::future<std::vector<Sample>> next;
  if (steps > 0) next = std::async(std::launch::async, load, int64_t(0));
  const auto t_train = Clock::now();
  for (int64_t st = 0; st < steps; ++st) {
    auto t = Clock::now();
    std::vector<Sample> batch = next.get();  // rethrows what the loader threw
    if (st + 1 < steps) next = std::async(std::launch::async, load, st + 1);
    rec.data_s += seconds_since(t);
    t = Clock::now();
    const int64_t N = static_cast<int64_t>(batch.size());
    x.assign(static_cast<size_t>(N * nvox * C), 0.f);
    target.assign(static_cast<size_t>(N * nvox), 0);
    for (int64_t b = 0; b < N; ++b) {
      Sample& s = batch[static_cast<size_t>(b)];
      interact(*m, c, s, epoch, &rec.click_forward_s);
      std::copy(s.input.begin(), s.input.end(), x.begin() + b * nvox * C);
      std::copy(s.label.data.begin(), s.label.data.end(), target.begin() + b * nvox);
    }
    rec.clicks_s += seconds_since(t);
    t = Clock::now();
    if (m->buckets) m->buckets->begin();
    TrainStepResult r = m->step.forward_backward(x.data(), target.data(), static_cast<int>(N), spatial);
    // Training Dice of this step's predictions (before the update, as the bundle's train_dice).
    pred.resize(static_cast<size_t>(N * nvox));
    argmax_to_host(*m, r.logits.data, N * nvox, c.arch.out_channels, pred.data());
    for (int64_t b = 0; b < N; ++b) {
      const double d = bundle_mean_dice(pred.data() + b * nvox, target.data() + b * nvox, nvox, c.arch.out_channels);
      if (std::isfinite(d)) acc[1] += d, acc[2] += 1;
    }
    // Average the gradients over ranks (each rank's loss is its own batch mean).
    if (m->buckets) {
      m->buckets->finish();  // waits for the buckets started during the backward, then scales by 1/world
    } else if (m_comm.size() > 1) {
      // Device gradients and a communicator for host buffers only (MPI with CUDA): one blocking call via the host.
      ParameterSet& ps = m->net.parameters();
      const int64_t np = ps.numel();
      const float inv = 1.0f / static_cast<float>(m_comm.size());
      std::vector<float> g(static_cast<size_t>(np));
      backend(m->device).copy(g.data(), Device::CPU, ps.grads(), m->device, ps.bytes(), nullptr);
      backend(m->device).synchronize(nullptr);
      m_comm.allreduce_sum(g.data(), np);
      for (auto& v : g) v *= inv;
      backend(m->device).copy(ps.grads(), m->device, g.data(), Device::CPU, ps.bytes(), nullptr);
    }
    m->step.apply(r);
    rec.step_s += seconds_since(t);
    ++m->counters.step;
    acc[0] += static_cast<double>(r.loss.loss) * static_cast<double>(N);
    acc[3] += static_cast<double>(N);
    if (root && c.progress) {
      const double el = seconds_since(t_train), per = el / static_cast<double>(st + 1);
      const double vps = acc[3] * m_comm.size() / el;
      const double rest = per * static_cast<double>(steps - st - 1) +
                          per * static_cast<double>(steps) * static_cast<double>(c.max_epochs - epoch - 1);
      std::fprintf(stderr, "%sepoch %lld/%lld step %lld/%lld loss %.4f (dice %.4f ce %.4f) | %.3f vol/s | ETA %s%s",
                   tty ? "\r" : "", static_cast<long long>(epoch + 1), static_cast<long long>(c.max_epochs),
                   static_cast<long long>(st + 1), static_cast<long long>(steps), static_cast<double>(r.loss.loss),
                   static_cast<double>(r.loss.dice), static_cast<double>(r.loss.ce), vps, hms(rest).c_str(),
                   tty ? "   " : "\n");
      std::fflush(stderr);
    }
  }
  const double train_s = seconds_since(t_train);
  m_comm.allreduce_sum(acc, 4);
  rec.steps = steps;
  rec.train_loss = acc[3] > 0 ? acc[0] / acc[3] : std::numeric_limits<double>::quiet_NaN();
  rec.train_dice = acc[2] > 0 ? acc[1] / acc[2] : std::numeric_limits<double>::quiet_NaN();
  rec.samples_per_s = train_s > 0 ? acc[3] / train_s : 0;
  if ((epoch + 1) % c.val_interval == 0 && m->val_cache->size() > 0) {
    const auto t_val = Clock::now();
    const ValidationResult v = validate(epoch);
    rec.val_s = seconds_since(t_val);
    rec.validated = true;
    rec.val_spleen_dice = v.spleen_dice;
    rec.val_mean_dice = v.mean_dice;
  }
  rec.seconds = seconds_since(t0);
  m->counters.epoch = epoch + 1;
  if (rec.validated && std::isfinite(rec.val_mean_dice) && rec.val_mean_dice > m_best_metric) {
    m_best_metric = rec.val_mean_dice;
    m_best_epoch = rec.epoch;
    rec.best = true;
  }
  m->history.push_back(rec);
  if (root) {
    // Logs first, then the best model, then the state: a state on disk always has its epochs in metrics.jsonl.
    write_metrics_jsonl(c.output_dir + "/metrics.jsonl", m->history);
    write_training_curve(c.output_dir + "/curve.png", m->history);
    if (rec.best) {
      ModelInfo info;
      info.arch = c.arch;
      info.label_names.clear();
      for (const auto& l : c.label_names) info.label_names.push_back(l.name);
      info.spatial_size = c.spatial_size;
      save_model(model_path(), m->net, info);
    }
    save_training_state(state_path(), m->net, m->opt, m->scaler, m->counters);
    if (c.progress && tty) std::fputc('\n', stderr);
    std::fprintf(stderr, "epoch %lld/%lld: loss %.4f train dice %.4f", static_cast<long long>(rec.epoch),
                 static_cast<long long>(c.max_epochs), rec.train_loss, rec.train_dice);
    if (rec.validated)
      std::fprintf(stderr, " | val spleen dice %.4f mean dice %.4f (best %.4f at epoch %lld%s)", rec.val_spleen_dice,
                   rec.val_mean_dice, m_best_metric, static_cast<long long>(m_best_epoch),
                   rec.best ? ", saved" : "");
    std::fprintf(stderr, " | %.1f s, %.3f vol/s", rec.seconds, rec.samples_per_s);
    if (rec.steps > 0)  // where a step's time goes (rank 0): waiting for data, the click round, the train step
      std::fprintf(stderr,
                   " (per step: data wait %.0f ms, clicks %.0f ms (forwards %.0f ms), step %.0f ms; validation %.1f s)",
                   1e3 * rec.data_s / double(rec.steps), 1e3 * rec.clicks_s / double(rec.steps),
                   1e3 * rec.click_forward_s / double(rec.steps), 1e3 * rec.step_s / double(rec.steps), rec.val_s);
    std::fputc('\n', stderr);
    std::fflush(stderr);
  }
  m_comm.barrier();
  return rec;
}

std::vector<EpochRecord> Trainer::run() {
  if (m_comm.size() > 1) {
    // Every rank initialised (or resumed) the same weights from the same seed (or file); rank 0's copy is sent anyway
    // so that ranks can never start apart.
    ParameterSet& ps = m->net.parameters();
    std::vector<float> w(static_cast<size_t>(ps.numel()));
    backend(m->device).copy(w.data(), Device::CPU, ps.values(), m->device, ps.bytes(), nullptr);
    backend(m->device).synchronize(nullptr);
    m_comm.broadcast(w.data(), ps.bytes(), 0);
    backend(m->device).copy(ps.values(), m->device, w.data(), Device::CPU, ps.bytes(), nullptr);
  }
  std::vector<EpochRecord> out;
  for (int64_t e = m->counters.epoch; e < m_cfg.max_epochs; ++e) {
    out.push_back(run_epoch(e));
    if (on_epoch_end) on_epoch_end(out.back());
  }
  return out;
}

}  // namespace dex
