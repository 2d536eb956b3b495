#include "layers/model_file.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "kernels/json_int.h"
#include "layers/safetensors.h"
#include "layers/torch_checkpoint.h"

namespace dex {

using nlohmann::json;

namespace {
// An integer in [lo, hi], else InputError (nlohmann's get<int> would truncate 2^32 + 8 to 8).
int checked_int(const json& e, int64_t lo, int64_t hi, const std::string& what, const std::string& key) {
  DEX_INPUT_CHECK(json_int_in(e, lo, hi), what, ": '", key, "' has ", e.dump(), ", not an integer in [", lo, ", ", hi, "]");
  return static_cast<int>(e.get<int64_t>());
}

json int3_list(const std::vector<Int3>& v) {
  json a = json::array();
  for (auto& x : v) a.push_back({x[0], x[1], x[2]});
  return a;
}
std::vector<Int3> int3_list_from(const json& j, const std::string& key, const std::string& what) {
  DEX_INPUT_CHECK(j.contains(key) && j[key].is_array(), what, ": '", key, "' must be a list of [d,h,w] triples");
  std::vector<Int3> out;
  for (auto& e : j[key]) {
    if (e.is_number()) {  // MONAI allows a scalar for an isotropic kernel/stride
      const int v = checked_int(e, 1, 1024, what, key);
      out.push_back({v, v, v});
      continue;
    }
    DEX_INPUT_CHECK(e.is_array() && e.size() == 3, what, ": '", key, "' entries must be integers or [d,h,w]");
    out.push_back({checked_int(e[0], 1, 1024, what, key), checked_int(e[1], 1, 1024, what, key),
                   checked_int(e[2], 1, 1024, what, key)});
  }
  return out;
}
}  // namespace

std::string dynunet_config_to_json(const DynUNetConfig& c) {
  json j;
  j["network"] = "DynUNet";
  j["spatial_dims"] = 3;
  j["in_channels"] = c.in_channels;
  j["out_channels"] = c.out_channels;
  j["kernel_size"] = int3_list(c.kernel_sizes);
  j["strides"] = int3_list(c.strides);
  j["upsample_kernel_size"] = int3_list(c.upsample_kernel_sizes);
  j["filters"] = c.filters;
  j["norm_name"] = c.block.norm_affine ? "instance_affine" : "instance";
  j["negative_slope"] = c.block.negative_slope;
  j["res_block"] = true;
  j["deep_supervision"] = false;
  return j.dump();
}

DynUNetConfig dynunet_config_from_json(const std::string& text, const std::string& what) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw InputError(str(what, ": not valid JSON (", e.what(), ")"));
  }
  DEX_INPUT_CHECK(j.is_object(), what, ": expected a JSON object");
  if (j.contains("network"))
    DEX_INPUT_CHECK(j["network"] == "DynUNet", what, ": network ", j["network"].dump(), " is not a DynUNet");
  DynUNetConfig c;
  try {
    if (j.contains("in_channels")) c.in_channels = checked_int(j["in_channels"], 1, 256, what, "in_channels");
    if (j.contains("out_channels")) c.out_channels = checked_int(j["out_channels"], 1, 256, what, "out_channels");
    if (j.contains("kernel_size")) c.kernel_sizes = int3_list_from(j, "kernel_size", what);
    if (j.contains("strides")) c.strides = int3_list_from(j, "strides", what);
    if (j.contains("upsample_kernel_size")) c.upsample_kernel_sizes = int3_list_from(j, "upsample_kernel_size", what);
    if (j.contains("filters")) {
      DEX_INPUT_CHECK(j["filters"].is_array(), what, ": 'filters' must be a list of integers");
      c.filters.clear();
      for (const auto& f : j["filters"]) c.filters.push_back(checked_int(f, 1, 65536, what, "filters"));
    }
    if (j.contains("norm_name")) c.block.norm_affine = j["norm_name"] == "instance_affine";
    if (j.contains("negative_slope")) c.block.negative_slope = j["negative_slope"].get<float>();
    if (j.contains("res_block")) DEX_INPUT_CHECK(j["res_block"].get<bool>(), what, ": only res_block=true is supported");
    if (j.contains("deep_supervision"))
      DEX_INPUT_CHECK(!j["deep_supervision"].get<bool>(), what, ": deep_supervision is not supported");
  } catch (const json::exception& e) {
    throw InputError(str(what, ": malformed value (", e.what(), ")"));
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw InputError(str(what, ": ", e.what()));
  }
  return c;
}

std::map<std::string, std::string> model_metadata(const ModelInfo& info) {
  std::map<std::string, std::string> md;
  md["format"] = "dex-deepedit-1";
  md["dex_architecture"] = dynunet_config_to_json(info.arch);
  md["label_names"] = json(info.label_names).dump();
  md["spatial_size"] = json(std::vector<int64_t>(info.spatial_size.begin(), info.spatial_size.end())).dump();
  md["intensity_window"] = json(std::vector<float>{info.a_min, info.a_max}).dump();
  md["dex_version"] = info.dex_version;
  return md;
}

ModelInfo model_info_from_metadata(const std::map<std::string, std::string>& md, const std::string& file) {
  ModelInfo info;
  const char* current = "";  // the key being read, for the error message
  auto get = [&](const char* key) -> const std::string* {
    current = key;
    auto it = md.find(key);
    return it == md.end() ? nullptr : &it->second;
  };
  try {
    if (auto s = get("dex_architecture")) info.arch = dynunet_config_from_json(*s, file + ": dex_architecture");
    if (auto s = get("label_names")) info.label_names = json::parse(*s).get<std::vector<std::string>>();
    if (auto s = get("spatial_size")) {
      const json v = json::parse(*s);
      DEX_INPUT_CHECK(v.is_array() && v.size() == 3, file, ": spatial_size must be 3 integers in [1, 1024]");
      for (int a = 0; a < 3; ++a) info.spatial_size[a] = checked_int(v[a], 1, 1024, file, "spatial_size");
    }
    if (auto s = get("intensity_window")) {
      auto v = json::parse(*s).get<std::vector<float>>();
      DEX_INPUT_CHECK(v.size() == 2 && std::isfinite(v[0]) && std::isfinite(v[1]) && v[1] > v[0], file,
                      ": intensity_window must be [a_min, a_max], finite, a_min < a_max");
      info.a_min = v[0];
      info.a_max = v[1];
    }
    if (auto s = get("dex_version")) info.dex_version = *s;
  } catch (const json::exception& e) {
    throw InputError(str(file, ": malformed model metadata '", current, "' (", e.what(), ")"));
  }
  return info;
}

void save_model(const std::string& path, const DynUNet& net, const ModelInfo& info) {
  ModelInfo copy = info;
  copy.arch = net.config();
  save_safetensors(path, net.state_dict(), model_metadata(copy));
}

LoadedModel load_model(const std::string& path) {
  LoadedModel m;
  std::map<std::string, std::string> md;
  try {
    m.weights = load_model_file(path, &md);
  } catch (const InputError& e) {
    throw InputError(str("cannot read model '", path, "' (a dex .safetensors file or a PyTorch model.pt): ", e.what()));
  }
  m.info = model_info_from_metadata(md, path);
  m.info.source = md.empty() ? "torch" : "safetensors";
  return m;
}

void load_weights_into(DynUNet& net, const LoadedModel& m, const std::string& path) {
  try {
    net.load_state_dict(m.weights);
  } catch (const Error& e) {
    throw InputError(str("model '", path, "' does not fit the DynUNet architecture it declares (",
                         m.info.source == "torch" ? "the bundle's DeepEdit network" : "from its metadata",
                         "): ", e.what()));
  }
}

}  // namespace dex
