// StateDict: named fp32 tensors in PyTorch layout, the in-memory form of a model file (safetensors or
// torch model.pt), plus the mapping of MONAI DynUNet's `skip_layers.*` aliases to canonical names (spec §2.3).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dex {

// One tensor: row-major (C order) shape, contiguous fp32 data (fp16/bf16 files are converted on read).
struct NamedTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
};

using StateDict = std::map<std::string, NamedTensor>;

// Maps a MONAI DynUNet alias prefix to its canonical prefix (spec §2.3 table), e.g.
// "skip_layers.next_layer.downsample.conv1.conv.weight" -> "downsamples.0.conv1.conv.weight".
// Returns the name unchanged when it is not a skip_layers alias. Throws InputError for a skip_layers name
// that matches no row of the table.
std::string canonical_dynunet_name(const std::string& name);

// Renames every skip_layers alias to its canonical name, in place. When both an alias and its canonical
// name are present (MONAI's 68-key state_dicts: aliases share storage) the duplicate is dropped if shape
// and data are bitwise equal; a conflicting duplicate (different shape or values) throws InputError naming
// both keys. Non-DynUNet names pass through unchanged.
void canonicalize_dynunet_names(StateDict& sd);

}  // namespace dex
