#include "autograd/ops/conv3d.h"
#include "autograd/ops/autocast.h"
#include "autograd/ops/conv_params.h"

namespace dex {

Conv3dParams conv3d_params(const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]) {
  return conv_params_from<Conv3dParams>("conv3d", x, w, stride, pad);
}

// Autocast forward: x and w to 16 bits (kept for the backward when recording), the 16-bit conv with fp32
// accumulation, y back to fp32. Backward: dy to 16 bits, dx = dgrad (16 bits, then fp32 honouring the write
// mode), dw += wgrad in fp32.
static void conv3d_autocast(Tape& tape, const Conv3dParams& p, const Tensor& x, const Tensor& w, const Tensor& y,
                            bool rec) {
  const DType dt = tape.autocast();
  const Backend& be = tape.be();
  Arena& arena = tape.arena();
  const size_t keep = arena.mark();
  const uint16_t* x16 = autocast_copy(tape, dt, x.data, x.numel());
  const uint16_t* w16 = autocast_copy(tape, dt, w.data, w.numel());
  const size_t mark = arena.mark();
  uint16_t* y16 = arena.alloc<uint16_t>(static_cast<size_t>(y.numel()));
  void* ws = tape.scratch(be.conv3d_workspace_bytes_mixed(p, dt));
  be.conv3d_fprop_mixed(p, dt, x16, w16, y16, ws, nullptr);
  be.convert_from_16(dt, y.numel(), y16, y.data, nullptr);
  arena.release_to(rec ? mark : keep);
  if (!rec) return;
  tape.record([&tape, p, dt, x, w, y, x16, w16] {
    if (!tape.grad_ready(y)) return;
    const Backend& be = tape.be();
    Arena& arena = tape.arena();
    const size_t mark = arena.mark();
    const uint16_t* dy16 = autocast_copy(tape, dt, y.grad, y.numel());
    void* ws = tape.scratch(be.conv3d_workspace_bytes_mixed(p, dt));
    if (x.grad) {
      uint16_t* dx16 = arena.alloc<uint16_t>(static_cast<size_t>(x.numel()));
      be.conv3d_dgrad_mixed(p, dt, dy16, w16, dx16, ws, nullptr);
      autocast_write(tape, dt, dx16, x.numel(), x.grad, tape.write_mode(x));
    }
    if (w.grad) be.conv3d_wgrad_mixed(p, dt, x16, dy16, w.grad, tape.write_mode(w), ws, nullptr);
    arena.release_to(mark);
  });
}

// forward
Tensor conv3d(Tape& tape, const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]) {
  const Conv3dParams p = conv3d_params(x, w, stride, pad);
  const bool rec = tape.needs_grad({&x, &w});
  Tensor y = tape.alloc(ndhwc(p.N, p.OD(), p.OH(), p.OW(), p.K), rec);
  if (tape.autocast() != DType::F32) {
    conv3d_autocast(tape, p, x, w, y, rec);
    return y;
  }
  const Backend& be = tape.be();
  size_t mark = tape.arena().mark();
  void* ws = tape.scratch(be.conv3d_workspace_bytes(p));
  be.conv3d_fprop(p, x.data, w.data, y.data, ws, nullptr);
  tape.arena().release_to(mark);
  if (rec) {
    // backward: dx = dgrad(dy, w), dw += wgrad(x, dy)
    tape.record([&tape, p, x, w, y] {
      if (!tape.grad_ready(y)) return;
      const Backend& be = tape.be();
      size_t mark = tape.arena().mark();
      void* ws = tape.scratch(be.conv3d_workspace_bytes(p));
      if (x.grad) be.conv3d_dgrad(p, y.grad, w.data, x.grad, tape.write_mode(x), ws, nullptr);
      if (w.grad) be.conv3d_wgrad(p, x.data, y.grad, w.grad, tape.write_mode(w), ws, nullptr);
      tape.arena().release_to(mark);
    });
  }
  return y;
}

}  // namespace dex
