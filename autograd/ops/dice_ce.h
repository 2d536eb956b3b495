// Differentiable MONAI DiceCELoss(to_onehot_y=True, softmax=True) (spec §9) as a one-element loss tensor.
// The backward scales d(loss)/d(logits) by the incoming gradient (the loss scale when seeded with it).
#pragma once
#include "autograd/tape.h"

namespace dex {

// logits NDHWC [N][D][H][W][C]; target [N][D][H][W] class indices on the tape's device. `result` (optional)
// receives loss, dice and CE on the host.
Tensor dice_ce(Tape& tape, const Tensor& logits, const uint8_t* target, DiceCEResult* result = nullptr,
               const DiceCEParams& weights = DiceCEParams());

}  // namespace dex
