#!/usr/bin/python3
"""Mixed-precision (autocast) training-step fixture for dex (tests/train/test_amp.cpp).

torch's fp16 autocast is CUDA-only (CPU autocast does bfloat16, and differs from dex's recipe in which ops stay
fp32), so this script EMULATES fp16 autocast by rounding, the way dex's CPU backend does (Tape::set_autocast):
every convolution (Conv3d and ConvTranspose3d, all passes) takes operands rounded to fp16 (x, w in the forward;
dy in the backward: Tensor.to(torch.float16)), computes in float64, and rounds its activation outputs (y, dx) to
fp16; the weight gradient stays unrounded (fp32 in dex). Everything else (instance norm, LeakyReLU, the concat,
the output head's bias, softmax, Dice+CE, the gradient accumulation of fan-out activations) runs in float64, as
dex runs it in fp32. The backward is seeded with the loss times GradScaler's initial scale 65536 and the
gradients are divided by it afterwards, as GradScaler.unscale_ does.

Inputs: the tiny parity net, input and target of tests/data/dynunet/tiny.fix (scripts/gen_fixtures_dynunet.py).
Writes tests/data/dynunet/tiny_amp.fix: loss, logits, and every parameter's unscaled gradient (g.<name>).
With --sensitivity it writes nothing and prints how much float32 instead of float64 accumulation moves the
logits and gradients (the tiny net amplifies fp16 rounding-order differences; see tests/train/test_amp.cpp).
Run with /usr/bin/python3 (Debian's torch).
"""
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures_dynunet as dyn  # noqa: E402
from fixture_io import write_fixture  # noqa: E402

OUT = dyn.OUT
LOSS_SCALE = 65536.0


def read_fixture(path):
    """The inverse of fixture_io.write_fixture: name -> numpy array."""
    dtypes = {0: np.float32, 1: np.float64, 2: np.int64, 3: np.uint8}
    out = {}
    with open(path, "rb") as f:
        assert f.read(8) == b"DEXFIX1\n", path
        while True:
            h = f.read(4)
            if not h:
                break
            name = f.read(struct.unpack("<I", h)[0]).decode()
            code, ndim = struct.unpack("<II", f.read(8))
            shape = struct.unpack("<%dq" % ndim, f.read(8 * ndim))
            dt = np.dtype(dtypes[code]).newbyteorder("<")
            n = int(np.prod(shape)) if ndim else 1
            out[name] = np.frombuffer(f.read(n * dt.itemsize), dtype=dt).reshape(shape).astype(dtypes[code])
    return out


def r16(t):
    """What a value becomes after storage in fp16 (round to nearest even), in t's dtype."""
    return t.to(torch.float16).to(t.dtype)


ACC = torch.float64  # the convolutions' accumulation dtype (--sensitivity compares float32)


class AutocastConv(torch.autograd.Function):
    """A convolution with fp16 operands and fp16 outputs, accumulated in ACC (float64: exactly enough)."""

    @staticmethod
    def forward(ctx, x, w, conv):
        xr, wr = r16(x), r16(w)
        ctx.save_for_backward(xr, wr)
        ctx.conv = conv
        return r16(conv(xr.to(ACC), wr.to(ACC)).to(x.dtype))

    @staticmethod
    def backward(ctx, dy):
        xr, wr = ctx.saved_tensors
        with torch.enable_grad():
            xx = xr.to(ACC).detach().requires_grad_()
            ww = wr.to(ACC).detach().requires_grad_()
            dx, dw = torch.autograd.grad(ctx.conv(xx, ww), (xx, ww), r16(dy).to(ACC))
        return r16(dx.to(dy.dtype)), dw.to(dy.dtype), None


def autocast_forward(self, x):
    """dyn.Convolution.forward under emulated autocast; the bias (output head) is added afterwards in float64."""
    c = self.conv
    if isinstance(c, torch.nn.ConvTranspose3d):
        def conv(a, b):
            return F.conv_transpose3d(a, b, None, c.stride, c.padding, c.output_padding)
    else:
        def conv(a, b):
            return F.conv3d(a, b, None, c.stride, c.padding)
    y = AutocastConv.apply(x, c.weight, conv)
    if c.bias is not None:
        y = y + c.bias.view(1, -1, 1, 1, 1)
    return y


def step(tiny):
    """One emulated-autocast forward + backward of the tiny net: loss, logits, unscaled gradients."""
    net = dyn.DynUNet(**dyn.TINY).double()
    params = dyn.canonical_params(net)
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(torch.from_numpy(tiny["w." + k].astype(np.float64)))
    x = torch.from_numpy(tiny["x"].astype(np.float64))
    target = torch.from_numpy(tiny["target"].astype(np.uint8))
    logits = net(x)
    loss, dice, ce = dyn.dice_ce(logits, target)
    (loss * LOSS_SCALE).backward()
    return loss, dice, ce, logits.detach(), {k: p.grad / LOSS_SCALE for k, p in params.items()}


def rel_rms(a, r):
    return float(((a - r) ** 2).sum().sqrt() / (r ** 2).sum().sqrt())


def main():
    global ACC
    tiny = read_fixture(os.path.join(OUT, "tiny.fix"))
    dyn.Convolution.forward = autocast_forward
    loss, dice, ce, logits, grads = step(tiny)
    if "--sensitivity" in sys.argv:
        # How far summation order alone moves this net's gradients under fp16 rounding: the same emulation with
        # float32 accumulation (what dex does) instead of float64. The bounds of tests/train/test_amp.cpp rest on it.
        ACC = torch.float32
        _, _, _, logits32, grads32 = step(tiny)
        print("float32 vs float64 accumulation: logits rel rms %.3g" % rel_rms(logits32, logits))
        for k in grads:
            print("  %-45s gradient rel rms %.4f" % (k, rel_rms(grads32[k], grads[k])))
        return
    fx = {"loss_scale": np.array([LOSS_SCALE]), "loss": np.array([loss.item()]), "logits": logits.float()}
    for k, g in grads.items():
        fx["g." + k] = g.float()
    write_fixture(os.path.join(OUT, "tiny_amp.fix"), fx)
    print("tiny_amp: loss %.7f (dice %.6f, ce %.6f), %d gradient tensors" % (loss.item(), dice.item(), ce.item(),
                                                                               len(grads)))


if __name__ == "__main__":
    main()
