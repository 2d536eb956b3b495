// Helpers of the autocast convolutions (conv3d.cpp, conv_transpose3d.cpp; Tape::autocast): 16-bit operand copies
// in the tape arena, and the fp32 write-back of a 16-bit result that honours the gradient write mode.
#pragma once
#include <cstdint>

#include "autograd/tape.h"

namespace dex {

// A 16-bit (tape.autocast() dtype) copy of n fp32 values, allocated in the tape arena.
inline uint16_t* autocast_copy(Tape& tape, DType dt, const float* src, int64_t n) {
  uint16_t* h = tape.arena().alloc<uint16_t>(static_cast<size_t>(n));
  tape.be().convert_to_16(dt, n, src, h, nullptr);
  return h;
}

// dst = float(src) (Overwrite) or dst += float(src) (Accumulate: a fan-out gradient adds up in fp32).
inline void autocast_write(Tape& tape, DType dt, const uint16_t* src, int64_t n, float* dst, GradMode mode) {
  const Backend& be = tape.be();
  if (mode == GradMode::Overwrite) {
    be.convert_from_16(dt, n, src, dst, nullptr);
    return;
  }
  const size_t mark = tape.arena().mark();
  float* tmp = tape.arena().alloc<float>(static_cast<size_t>(n));
  be.convert_from_16(dt, n, src, tmp, nullptr);
  be.add_bwd(n, tmp, dst, nullptr, GradMode::Accumulate, nullptr);
  tape.arena().release_to(mark);
}

}  // namespace dex
