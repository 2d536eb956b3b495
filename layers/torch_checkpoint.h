// Reads PyTorch `torch.save` checkpoints (model.pt) without Python: the zip archive torch writes
// (stored or deflated entries, zip64 when needed), `<archive>/data.pkl` through a minimal unpickler for the
// opcodes torch emits (protocols 2-5, no code execution: globals are only recognised by name), and tensor
// storages from `<archive>/data/<key>`, honouring storage offsets and strides (views share storage).
#pragma once
#include <map>
#include <string>

#include "layers/state_dict.h"

namespace dex {

// Accepts a plain state_dict, {"model": state_dict, ...} (MONAI's CheckpointSaver; other entries such as an
// optimizer state are parsed and ignored) or {"state_dict": state_dict, ...}. Tensors of any float dtype
// (fp32/fp16/bf16/fp64) and of integer dtypes are converted to fp32, contiguous, in their logical (view) shape.
// Names are returned as stored (see canonicalize_dynunet_names). Throws InputError, saying what was found, for:
// a file that is not a zip (incl. the pre-1.6 legacy format), a TorchScript archive, a missing data.pkl or
// storage record, a corrupt zip, an unsupported pickle opcode, a top-level object that is not a state dict, an
// entry that is not a tensor (naming the key), a view outside its storage.
StateDict load_torch_checkpoint(const std::string& path);

// For the CLIs: reads a safetensors file or a torch.save zip, chosen by content (not by extension), then
// canonicalize_dynunet_names. `metadata` receives a safetensors file's __metadata__ (nothing for torch files).
StateDict load_model_file(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace dex
