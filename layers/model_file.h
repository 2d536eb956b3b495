// dex's model file: safetensors with MONAI's state_dict names and PyTorch layouts, plus metadata (string values
// only, so structured values are JSON-encoded strings): "dex_architecture" (the DynUNet config), "label_names",
// "spatial_size", "intensity_window", "dex_version", "format" = "dex-deepedit-1". A MONAI/PyTorch model.pt is read
// too (no metadata: the bundle's defaults apply and the architecture is checked tensor by tensor).
#pragma once
#include <array>
#include <map>
#include <string>
#include <vector>

#include "layers/dynunet.h"
#include "layers/state_dict.h"

namespace dex {

struct ModelInfo {
  DynUNetConfig arch;                                             // the bundle's network by default
  std::vector<std::string> label_names = {"spleen", "background"};  // the bundle's label_names order
  std::array<int64_t, 3> spatial_size{128, 128, 128};
  float a_min = -175.f, a_max = 250.f;                            // ScaleIntensityRanged window
  std::string dex_version = DEX_VERSION;
  std::string source;                                             // "safetensors" or "torch" (set on load)
};

std::map<std::string, std::string> model_metadata(const ModelInfo& info);
// Missing keys keep the defaults; malformed values are InputErrors naming the key and `file`.
ModelInfo model_info_from_metadata(const std::map<std::string, std::string>& md, const std::string& file);

std::string dynunet_config_to_json(const DynUNetConfig& c);
DynUNetConfig dynunet_config_from_json(const std::string& json, const std::string& what = "architecture");

// Writes the network's weights + metadata atomically.
void save_model(const std::string& path, const DynUNet& net, const ModelInfo& info);

struct LoadedModel {
  ModelInfo info;
  StateDict weights;  // canonical names, PyTorch layouts
};
// Reads a dex safetensors file or a MONAI/PyTorch model.pt (chosen by content). InputError for a missing or
// unreadable file.
LoadedModel load_model(const std::string& path);
// Builds the network of `m.info.arch` on `device` and loads the weights; a state dict that does not fit the
// architecture is an InputError saying the model is for another architecture, naming the first bad tensor.
void load_weights_into(DynUNet& net, const LoadedModel& m, const std::string& path);

}  // namespace dex
