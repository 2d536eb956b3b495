#include "train/training_state.h"

#include <cstring>
#include <map>

#include "layers/safetensors.h"

namespace dex {

namespace {
const char* kExpAvg = "optimizer.exp_avg";
const char* kExpAvgSq = "optimizer.exp_avg_sq";

// Floats go through their bit pattern so the resume is exact.
std::string float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return std::to_string(u);
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint64_t meta_u64(const std::map<std::string, std::string>& m, const std::string& key, const std::string& path) {
  auto it = m.find(key);
  DEX_INPUT_CHECK(it != m.end(), "training state ", path, ": metadata '", key, "' is missing");
  try {
    size_t used = 0;
    unsigned long long v = std::stoull(it->second, &used);
    DEX_INPUT_CHECK(used == it->second.size(), "trailing characters");
    return v;
  } catch (const std::exception&) {
    throw InputError(str("training state ", path, ": metadata '", key, "' = '", it->second,
                         "' is not an unsigned integer"));
  }
}
}  // namespace

void save_training_state(const std::string& path, const DynUNet& model, const AdamOptimizer& opt,
                         const LossScaler& scaler, const TrainingCounters& c) {
  StateDict sd = model.state_dict();
  const int64_t n = model.num_parameters();
  sd[kExpAvg] = NamedTensor{{n}, opt.exp_avg()};
  sd[kExpAvgSq] = NamedTensor{{n}, opt.exp_avg_sq()};
  std::map<std::string, std::string> meta = {
      {"format", "dex training state v1"},
      {"adam_step", std::to_string(opt.step_count())},
      {"loss_scale_bits", float_bits(scaler.scale())},
      {"loss_scale_growth_tracker", std::to_string(scaler.growth_tracker())},
      {"loss_scale_skipped", std::to_string(scaler.skipped_steps())},
      {"step", std::to_string(c.step)},
      {"epoch", std::to_string(c.epoch)},
      {"rng_seed", std::to_string(c.rng.seed())},
      {"rng_stream", std::to_string(c.rng.stream())},
      {"rng_index", std::to_string(c.rng.index())},
  };
  save_safetensors(path, sd, meta);
}

void load_training_state(const std::string& path, DynUNet& model, AdamOptimizer& opt, LossScaler& scaler,
                         TrainingCounters& c) {
  std::map<std::string, std::string> meta;
  StateDict sd = load_safetensors(path, &meta);
  DEX_INPUT_CHECK(meta["format"] == "dex training state v1", "training state ", path,
                  ": not a dex training state (metadata 'format' is '", meta["format"], "')");
  const int64_t n = model.num_parameters();
  std::vector<float> moments[2];
  const char* keys[2] = {kExpAvg, kExpAvgSq};
  for (int i = 0; i < 2; ++i) {
    auto it = sd.find(keys[i]);
    DEX_INPUT_CHECK(it != sd.end(), "training state ", path, ": tensor '", keys[i], "' is missing");
    DEX_INPUT_CHECK(it->second.shape == std::vector<int64_t>{n}, "training state ", path, ": tensor '", keys[i],
                    "' has shape ", shape_str(it->second.shape), ", expected [", n, "]");
    moments[i] = std::move(it->second.data);
    sd.erase(it);
  }
  const float scale = bits_float(static_cast<uint32_t>(meta_u64(meta, "loss_scale_bits", path)));
  const int64_t adam_step = static_cast<int64_t>(meta_u64(meta, "adam_step", path));
  const int tracker = static_cast<int>(meta_u64(meta, "loss_scale_growth_tracker", path));
  const int64_t skipped = static_cast<int64_t>(meta_u64(meta, "loss_scale_skipped", path));
  TrainingCounters nc;
  nc.step = static_cast<int64_t>(meta_u64(meta, "step", path));
  nc.epoch = static_cast<int64_t>(meta_u64(meta, "epoch", path));
  nc.rng = Rng(meta_u64(meta, "rng_seed", path), meta_u64(meta, "rng_stream", path),
               meta_u64(meta, "rng_index", path));
  try {
    model.load_state_dict(sd);
  } catch (const InputError& e) {
    throw InputError(str("training state ", path, ": ", e.what()));
  }
  opt.set_state(adam_step, moments[0], moments[1]);
  if (scaler.config().enabled) scaler.set_state(scale, tracker, skipped);
  else scaler.set_state(scaler.config().init_scale, tracker, skipped);
  c = nc;
}

}  // namespace dex
