#include "autograd/ops/conv_transpose3d.h"
#include "autograd/ops/autocast.h"
#include "autograd/ops/conv_params.h"

namespace dex {

ConvTranspose3dParams conv_transpose3d_params(const Tensor& x, const Tensor& w, const int stride[3],
                                              const int pad[3]) {
  return conv_params_from<ConvTranspose3dParams>("conv_transpose3d", x, w, stride, pad);
}

// forward
Tensor conv_transpose3d(Tape& tape, const Tensor& x, const Tensor& w, const int stride[3], const int pad[3]) {
  const ConvTranspose3dParams p = conv_transpose3d_params(x, w, stride, pad);
  const bool rec = tape.needs_grad({&x, &w});
  Tensor y = tape.alloc(ndhwc(p.N, p.OD(), p.OH(), p.OW(), p.K), rec);
  const Backend& be = tape.be();
  if (tape.autocast() != DType::F32) {
    autocast_conv<ConvTranspose3dParams>(tape, p, x, w, y, rec,
                                         {be.conv_transpose3d_workspace_bytes_mixed, be.conv_transpose3d_fprop_mixed,
                                          be.conv_transpose3d_dgrad_mixed, be.conv_transpose3d_wgrad_mixed});
    return y;
  }
  be.conv_transpose3d_fprop(p, x.data, w.data, y.data, nullptr);
  if (rec) {
    // backward: dx = dgrad(dy, w), dw += wgrad(x, dy)
    tape.record([&tape, p, x, w, y] {
      if (!tape.grad_ready(y)) return;
      const Backend& be = tape.be();
      if (x.grad) be.conv_transpose3d_dgrad(p, y.grad, w.data, x.grad, tape.write_mode(x), nullptr);
      if (w.grad) be.conv_transpose3d_wgrad(p, x.data, y.grad, w.grad, tape.write_mode(w), nullptr);
    });
  }
  return y;
}

}  // namespace dex
