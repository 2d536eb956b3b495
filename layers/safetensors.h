// safetensors model files (https://github.com/huggingface/safetensors, format as its README): an 8-byte
// little-endian u64 header length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]},
// "__metadata__": {string: string}} padded with spaces to a multiple of 8, then the raw little-endian data;
// offsets are relative to the data start and the tensors tile the data exactly (no gaps, no overlaps).
#pragma once
#include <map>
#include <string>

#include "layers/state_dict.h"

namespace dex {

// Writes every tensor as F32 (in name order, which is also the order the safetensors library writes equal
// dtypes in), plus `metadata` (string values only: encode structured values such as the architecture config as
// a JSON string). Atomic: writes a temp file in the same folder, then renames it over `path`.
// Throws InputError when the file cannot be written or a tensor's data size does not match its shape.
void save_safetensors(const std::string& path, const StateDict& sd,
                      const std::map<std::string, std::string>& metadata = {});

// Reads F32, F16, BF16 and F64 tensors (converted to float). `metadata`, if given, receives __metadata__.
// Every malformed file (short, header length beyond the file, bad JSON, unknown dtype, shape/size mismatch,
// overlapping, gapped or out-of-range offsets) throws InputError naming the file and, where it applies, the tensor.
StateDict load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

// True when the first bytes of the file look like safetensors (a plausible header length, then '{').
bool is_safetensors_file(const std::string& path);

}  // namespace dex
