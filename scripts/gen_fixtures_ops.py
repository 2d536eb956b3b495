#!/usr/bin/env python3
"""Fixtures for the non-convolution CPU ops (tests/kernels/test_<op>.cpp), computed by PyTorch.

Run from the repository root with Debian's torch:  /usr/bin/python3 scripts/gen_fixtures_ops.py
Writes tests/data/ops/<op>.bin (format: scripts/fixture_io.py). Every tensor is stored in dex's NDHWC layout
([N][D][H][W][C]). Inputs are float32; references of arithmetic ops are computed by torch in float64 from those
float32 inputs (the exact math the fp32 kernel rounds once), except where the test wants bit-exact parity with
torch's own float32 result (leaky_relu, add, bias_add forward, concat, argmax, dtype conversions).
Backward references are torch autograd gradients of sum(y * dy) for a random dy.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "ops")
torch.manual_seed(20261127)


def ndhwc(t):
    """NCDHW -> NDHWC (contiguous)."""
    return t.permute(0, *range(2, t.dim()), 1).contiguous()


def randn(*shape, scale=1.0, offset=0.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale + offset).float()


def save(name, tensors):
    path = os.path.join(OUT, name + ".bin")
    write_fixture(path, tensors)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(tensors)} tensors")


def instance_norm():
    t = {}
    for case, (N, C, sp, affine, offset) in {
        "plain": (2, 3, (3, 5, 7), False, 0.0),
        "affine": (2, 5, (3, 5, 7), True, 0.0),
        "offset": (1, 3, (5, 3, 4), False, 4.0),   # mean far from 0 relative to the spread
    }.items():
        x32 = randn(N, C, *sp, offset=offset)
        x = x32.double().requires_grad_(True)
        g32, b32 = randn(C, scale=0.5, offset=1.0), randn(C, scale=0.5)
        g = g32.double().requires_grad_(True)
        b = b32.double().requires_grad_(True)
        y = F.instance_norm(x, weight=g if affine else None, bias=b if affine else None, eps=1e-5)
        dy32 = randn(*y.shape)
        (y * dy32.double()).sum().backward()
        dims = tuple(range(2, x.dim()))
        mean = x.detach().mean(dim=dims)
        var = x.detach().var(dim=dims, unbiased=False)
        t[f"{case}.x"] = ndhwc(x32)
        t[f"{case}.y"] = ndhwc(y.detach())
        t[f"{case}.dy"] = ndhwc(dy32)
        t[f"{case}.dx"] = ndhwc(x.grad)
        t[f"{case}.mean"] = mean
        t[f"{case}.rstd"] = 1.0 / torch.sqrt(var + 1e-5)
        if affine:
            t[f"{case}.gamma"], t[f"{case}.beta"] = g32, b32
            t[f"{case}.dgamma"], t[f"{case}.dbeta"] = g.grad, b.grad
    save("instance_norm", t)


def leaky_relu():
    x = randn(2, 3, 3, 5, 7)
    x[0, 0, 0, 0, :3] = 0.0  # exact zeros: forward 0, backward takes the slope (PyTorch: x > 0 ? dy : dy*slope)
    x = x.requires_grad_(True)
    y = F.leaky_relu(x, 0.01)  # float32: one fp32 multiply, compared bit-exactly
    dy = randn(*y.shape)
    y.backward(dy)
    save("leaky_relu", {"x": ndhwc(x.detach()), "y": ndhwc(y.detach()), "dy": ndhwc(dy), "dx": ndhwc(x.grad)})


def add():
    a, b = randn(2, 5, 3, 5, 7), randn(2, 5, 3, 5, 7, scale=3.0)
    save("add", {"a": ndhwc(a), "b": ndhwc(b), "y": ndhwc(a + b)})  # float32 add: one rounding, bit-exact


def bias_add():
    x, bias = randn(2, 3, 3, 5, 7), randn(3)
    y = x + bias.view(1, 3, 1, 1, 1)  # float32, bit-exact
    dy = randn(2, 3, 3, 5, 7)
    bd = bias.double().requires_grad_(True)
    (x.double() + bd.view(1, 3, 1, 1, 1)).mul(dy.double()).sum().backward()
    save("bias_add", {"x": ndhwc(x), "bias": bias, "y": ndhwc(y), "dy": ndhwc(dy), "dbias": bd.grad})


def concat():
    a, b = randn(2, 3, 3, 5, 7).requires_grad_(True), randn(2, 5, 3, 5, 7).requires_grad_(True)
    y = torch.cat([a, b], dim=1)
    dy = randn(*y.shape)
    y.backward(dy)
    save("concat", {"a": ndhwc(a.detach()), "b": ndhwc(b.detach()), "y": ndhwc(y.detach()), "dy": ndhwc(dy),
                    "da": ndhwc(a.grad), "db": ndhwc(b.grad)})


def softmax():
    t = {}
    for case, C in {"c2": 2, "c5": 5}.items():
        x32 = randn(2, C, 3, 5, 7, scale=4.0)
        x = x32.double().requires_grad_(True)
        y = torch.softmax(x, dim=1)
        dy32 = randn(*y.shape)
        y.backward(dy32.double())
        t[f"{case}.x"], t[f"{case}.y"] = ndhwc(x32), ndhwc(y.detach())
        t[f"{case}.dy"], t[f"{case}.dx"] = ndhwc(dy32), ndhwc(x.grad)
    save("softmax", t)


def argmax():
    t = {}
    x = torch.randint(0, 3, (2, 5, 3, 5, 7)).float()  # many ties: torch.argmax takes the lowest index
    t["ties.x"], t["ties.idx"] = ndhwc(x), torch.argmax(x, dim=1).to(torch.uint8)
    x = randn(2, 3, 3, 5, 7)
    t["real.x"], t["real.idx"] = ndhwc(x), torch.argmax(x, dim=1).to(torch.uint8)
    save("argmax", t)


def monai_dice_ce(logits, target, smooth_nr=1e-5, smooth_dr=1e-5, lambda_dice=1.0, lambda_ce=1.0):
    """monai.losses.DiceCELoss(to_onehot_y=True, softmax=True) with its defaults (include_background=True,
    reduction="mean", batch=False, squared_pred=False, jaccard=False), written out as MONAI 1.x does it.
    logits (B, C, *spatial), target (B, 1, *spatial)."""
    n_pred_ch = logits.shape[1]
    # DiceLoss.forward: softmax, one_hot(target), reduce over the spatial axes, mean over (B, C)
    inp = torch.softmax(logits, 1)
    tgt = F.one_hot(target[:, 0].long(), n_pred_ch).permute(0, -1, *range(1, target.dim() - 1)).to(inp.dtype)
    reduce_axis = list(range(2, inp.dim()))
    intersection = torch.sum(tgt * inp, dim=reduce_axis)
    ground_o = torch.sum(tgt, dim=reduce_axis)
    pred_o = torch.sum(inp, dim=reduce_axis)
    denominator = ground_o + pred_o
    f = 1.0 - (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)
    dice = torch.mean(f)
    # DiceCELoss.ce: target squeezed to class indices, nn.CrossEntropyLoss(reduction="mean") on the logits
    ce = F.cross_entropy(logits, torch.squeeze(target, dim=1).long())
    return lambda_dice * dice + lambda_ce * ce, dice, ce


def dice_ce():
    t = {}
    cases = {
        "c2": (2, 2, (3, 5, 7), 1.0, 1.0, False),
        "empty_fg": (2, 2, (3, 5, 7), 1.0, 1.0, True),  # sample 1 has no spleen voxel
        "c3_lambda": (2, 3, (3, 5, 4), 0.5, 2.0, False),
    }
    for case, (N, C, sp, ld, lc, empty) in cases.items():
        z32 = randn(N, C, *sp, scale=2.0)
        tgt = torch.randint(0, C, (N, 1, *sp))
        if empty:
            tgt[1] = 0
        z = z32.double().requires_grad_(True)
        loss, dice, ce = monai_dice_ce(z, tgt, lambda_dice=ld, lambda_ce=lc)
        loss.backward()
        t[f"{case}.logits"], t[f"{case}.target"] = ndhwc(z32), tgt[:, 0].to(torch.uint8)
        t[f"{case}.params"] = torch.tensor([ld, lc], dtype=torch.float64)
        t[f"{case}.loss"] = loss.detach().reshape(1)
        t[f"{case}.dice"], t[f"{case}.ce"] = dice.detach().reshape(1), ce.detach().reshape(1)
        t[f"{case}.dlogits"] = ndhwc(z.grad)
    save("dice_ce", t)


def adam():
    t = {}
    steps, n = 6, 41
    for case, kw in {"default": dict(lr=1e-3), "wd": dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)}.items():
        p32 = randn(n)
        grads = randn(steps, n, scale=0.1)
        grads[:, 0] = 0.0  # a parameter whose gradient is always zero (v stays 0: eps keeps the step finite)
        p = torch.nn.Parameter(p32.double().clone())
        opt = torch.optim.Adam([p], foreach=False, **kw)
        ps, ms, vs = [], [], []
        for k in range(steps):
            p.grad = grads[k].double().clone()
            opt.step()
            st = opt.state[p]
            ps.append(p.detach().clone())
            ms.append(st["exp_avg"].clone())
            vs.append(st["exp_avg_sq"].clone())
        betas = kw.get("betas", (0.9, 0.999))
        t[f"{case}.hyper"] = torch.tensor([kw["lr"], betas[0], betas[1], kw.get("eps", 1e-8),
                                           kw.get("weight_decay", 0.0)], dtype=torch.float64)
        t[f"{case}.param0"], t[f"{case}.grads"] = p32, grads
        t[f"{case}.param"], t[f"{case}.m"], t[f"{case}.v"] = torch.stack(ps), torch.stack(ms), torch.stack(vs)
    save("adam", t)


def convert():
    g = torch.Generator().manual_seed(7)
    parts = [
        torch.randn(400, generator=g) * 10.0 ** torch.randint(-8, 6, (400,), generator=g).float(),  # wide range
        torch.rand(100, generator=g) * 2.0 ** -14,  # fp16 subnormal range
        torch.tensor([0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e6, -1e6, 2.0 ** -24, 2.0 ** -25, 2.0 ** -26,
                      1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,
                      float("inf"), float("-inf"), float("nan"), 3.0e38, -3.4e38, 1e-40]),
    ]
    x = torch.cat(parts).float()
    f16 = x.half().view(torch.int16).numpy().astype(np.uint16).astype(np.int64)
    bf16 = x.bfloat16().view(torch.int16).numpy().astype(np.uint16).astype(np.int64)
    # the reverse: every fp16 subnormal/special exponent plus random bit patterns
    bits = torch.cat([torch.arange(0, 1100), torch.arange(0x7c00, 0x7c00 + 4), torch.arange(0xfc00, 0xfc00 + 4),
                      torch.randint(0, 65536, (1000,), generator=g)]).to(torch.int32)
    hb = bits.to(torch.int16)  # wraps to the same bit pattern
    f16_back = hb.view(torch.float16).float()
    bf16_back = hb.view(torch.bfloat16).float()
    save("convert", {"x": x, "f16_bits": f16, "bf16_bits": bf16, "bits": bits.to(torch.int64),
                     "f16_to_f32": f16_back, "bf16_to_f32": bf16_back})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for fn in (instance_norm, leaky_relu, add, bias_add, concat, softmax, argmax, dice_ce, adam, convert):
        fn()
