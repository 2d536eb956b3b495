// Save and resume the full training state in one safetensors file: the weights under their MONAI names
// (PyTorch layout, so the file is also a model file), Adam's moments as two flat tensors over the contiguous
// parameter buffer, and in __metadata__ the Adam step, the loss scaler (scale, growth tracker, skipped steps),
// the epoch/step counters and a dex::Rng state (seed, stream, index). Resuming is bitwise: the same steps after
// a reload give the same bits as without it.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/rng.h"
#include "layers/dynunet.h"
#include "train/adam_optimizer.h"
#include "train/loss_scaler.h"

namespace dex {

struct TrainingCounters {
  int64_t step = 0;   // optimiser steps attempted (applied + skipped)
  int64_t epoch = 0;
  Rng rng;            // the trainer's sequential generator (data order, clicks ...)
};

void save_training_state(const std::string& path, const DynUNet& model, const AdamOptimizer& opt,
                         const LossScaler& scaler, const TrainingCounters& counters);
// Throws InputError naming the file and the bad entry (missing, mis-shaped, unparsable).
void load_training_state(const std::string& path, DynUNet& model, AdamOptimizer& opt, LossScaler& scaler,
                         TrainingCounters& counters);

}  // namespace dex
