// StateDict: named fp32 tensors in PyTorch layout, the in-memory form of a model file (safetensors or
// torch model.pt), plus the mapping of MONAI DynUNet's `skip_layers.*` aliases to canonical names (spec §2.3).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernels/common.h"  // InputError, thrown by everything below

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
// `num_upsamples` is the number of up blocks (5 for the bundle's network; tiny test networks have fewer):
// the alias `skip_layers.` + k x `next_layer.` + `upsample` is `upsamples.<num_upsamples-1-k>`.
// Returns the name unchanged when it is not a skip_layers alias. Throws InputError for a skip_layers name
// that matches no row of the table.
std::string canonical_dynunet_name(const std::string& name, int num_upsamples = 5);

// The number of up blocks of the DynUNet a state dict belongs to, from its names (the bottleneck alias
// depth, else the deepest downsample alias + 1, else the highest canonical index); 5 when nothing tells.
int infer_dynunet_upsamples(const StateDict& sd);

// Renames every skip_layers alias to its canonical name, in place. When both an alias and its canonical
// name are present (MONAI's 68-key state_dicts: aliases share storage) the duplicate is dropped if shape
// and data are bitwise equal; a conflicting duplicate (different shape or values) throws InputError naming
// both keys. Non-DynUNet names pass through unchanged. The depth is taken from infer_dynunet_upsamples.
void canonicalize_dynunet_names(StateDict& sd);

}  // namespace dex
