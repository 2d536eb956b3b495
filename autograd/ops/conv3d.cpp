#include "autograd/ops/conv3d.h"
#include "autograd/ops/autocast.h"
#include "autograd/ops/conv_params.h"

namespace dex {

Conv3dParams conv3d_params(const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]) {
  return conv_params_from<Conv3dParams>("conv3d", x, w, stride, pad);
}

// forward
Tensor conv3d(Tape& tape, const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]) {
  const Conv3dParams p = conv3d_params(x, w, stride, pad);
  const bool rec = tape.needs_grad({&x, &w});
  Tensor y = tape.alloc(ndhwc(p.N, p.OD(), p.OH(), p.OW(), p.K), rec);
  const Backend& be = tape.be();
  if (tape.autocast() != DType::F32) {
    autocast_conv<Conv3dParams>(tape, p, x, w, y, rec,
                       {be.conv3d_workspace_bytes_mixed, be.conv3d_fprop_mixed, be.conv3d_dgrad_mixed,
                        be.conv3d_wgrad_mixed});
    return y;
  }
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
