// Helpers of the autocast convolutions (conv3d.cpp, conv_transpose3d.cpp; Tape::autocast): 16-bit operand copies
// in the tape arena, the fp32 write-back of a 16-bit result that honours the gradient write mode, and the one
// autocast forward/backward both conv ops run through their Backend *_mixed entries.
#pragma once
#include <cstdint>

#include "autograd/tape.h"
#include "autograd/tensor.h"

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

// The mixed-precision entries of one convolution op (Backend::conv3d_*_mixed or conv_transpose3d_*_mixed).
template <class P>
struct MixedConvOps {
  size_t (*workspace_bytes)(const P&, DType);
  void (*fprop)(const P&, DType, const uint16_t* x, const uint16_t* w, uint16_t* y, void* ws, void* stream);
  void (*dgrad)(const P&, DType, const uint16_t* dy, const uint16_t* w, uint16_t* dx, void* ws, void* stream);
  void (*wgrad)(const P&, DType, const uint16_t* x, const uint16_t* dy, float* dw, GradMode, void* ws, void* stream);
};

// Autocast forward of a convolution: x and w to 16 bits (kept for the backward when recording), the 16-bit conv
// with fp32 accumulation, y back to fp32. Backward: dy to 16 bits, dx = dgrad (16 bits, then fp32 honouring the
// write mode), dw += wgrad in fp32.
template <class P>
void autocast_conv(Tape& tape, const P& p, const Tensor& x, const Tensor& w, const Tensor& y, bool rec,
                   MixedConvOps<P> ops) {
  const DType dt = tape.autocast();
  Arena& arena = tape.arena();
  const size_t keep = arena.mark();
  const uint16_t* x16 = autocast_copy(tape, dt, x.data, x.numel());
  const uint16_t* w16 = autocast_copy(tape, dt, w.data, w.numel());
  const size_t mark = arena.mark();
  uint16_t* y16 = arena.alloc<uint16_t>(static_cast<size_t>(y.numel()));
  void* ws = tape.scratch(ops.workspace_bytes(p, dt));
  ops.fprop(p, dt, x16, w16, y16, ws, nullptr);
  tape.be().convert_from_16(dt, y.numel(), y16, y.data, nullptr);
  arena.release_to(rec ? mark : keep);
  if (!rec) return;
  tape.record([&tape, p, dt, x, w, y, x16, w16, ops] {
    if (!tape.grad_ready(y)) return;
    Arena& arena = tape.arena();
    const size_t mark = arena.mark();
    const uint16_t* dy16 = autocast_copy(tape, dt, y.grad, y.numel());
    void* ws = tape.scratch(ops.workspace_bytes(p, dt));
    if (x.grad) {
      uint16_t* dx16 = arena.alloc<uint16_t>(static_cast<size_t>(x.numel()));
      ops.dgrad(p, dt, dy16, w16, dx16, ws, nullptr);
      autocast_write(tape, dt, dx16, x.numel(), x.grad, tape.write_mode(x));
    }
    if (w.grad) ops.wgrad(p, dt, x16, dy16, w.grad, tape.write_mode(w), ws, nullptr);
    arena.release_to(mark);
  });
}

}  // namespace dex
