#!/usr/bin/python3
"""Fixtures for conv3d / conv_transpose3d: PyTorch forward and both gradients on small seeded cases.

Run with Debian's python: /usr/bin/python3 scripts/gen_fixtures_conv.py   (writes tests/data/conv/*.bin)

Inputs are drawn as float32 (uniform [-1, 1)); the expected outputs are computed by torch in float64 on exactly
those float32 values and stored as float64, so a test's only error sources are its own summation order and
output rounding. Layouts are converted to dex's: activations NDHWC, conv weights [K][KD][KH][KW][C] (torch
[K][C][KD][KH][KW]), transposed-conv weights [K_out][KD][KH][KW][C_in] (torch [C_in][K_out][KD][KH][KW]).
Each file holds: params (int64: N C K D H W KD KH KW s0 s1 s2 p0 p1 p2 d0 d1 d2), x, w, gy (upstream gradient,
NDHWC), y, dx, dw.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "conv")

# name, N, C, K, (D, H, W), (KD, KH, KW), stride, pad, dilation
CONV_CASES = [
    ("conv3d_k3s1p1", 1, 4, 5, (6, 6, 6), (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1)),
    ("conv3d_k3s2p1", 1, 3, 4, (7, 6, 5), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)),
    ("conv3d_k3s221p1", 1, 4, 3, (6, 6, 5), (3, 3, 3), (2, 2, 1), (1, 1, 1), (1, 1, 1)),
    ("conv3d_k1s2", 1, 5, 4, (5, 6, 7), (1, 1, 1), (2, 2, 2), (0, 0, 0), (1, 1, 1)),
    ("conv3d_k1s221", 1, 4, 6, (6, 6, 5), (1, 1, 1), (2, 2, 1), (0, 0, 0), (1, 1, 1)),
    ("conv3d_k1s1", 1, 6, 3, (4, 5, 3), (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1)),
    ("conv3d_odd5x7x9_c3", 1, 3, 4, (5, 7, 9), (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1)),
    ("conv3d_batch2_k3s2p1", 2, 3, 4, (5, 7, 9), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)),
    ("conv3d_k3s1p2d2", 1, 3, 2, (6, 5, 7), (3, 3, 3), (1, 1, 1), (2, 2, 2), (2, 2, 2)),
    ("conv3d_k231_s121_p101", 2, 2, 3, (5, 6, 4), (2, 3, 1), (1, 2, 1), (1, 0, 1), (1, 1, 1)),
]

# name, N, C_in, K_out, (D, H, W), kernel, stride, pad
CONVT_CASES = [
    ("conv_transpose3d_k2s2", 1, 4, 3, (3, 4, 5), (2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ("conv_transpose3d_k221s221_batch2", 2, 3, 4, (3, 3, 4), (2, 2, 1), (2, 2, 1), (0, 0, 0)),
    ("conv_transpose3d_k3s2p1", 1, 3, 2, (3, 4, 3), (3, 3, 3), (2, 2, 2), (1, 1, 1)),
    ("conv_transpose3d_k2s1", 2, 2, 3, (3, 2, 4), (2, 2, 2), (1, 1, 1), (0, 0, 0)),
]


def rand32(gen, *shape):
    return (torch.rand(*shape, generator=gen, dtype=torch.float32) * 2 - 1).double()


def ndhwc(t):
    return t.permute(0, 2, 3, 4, 1).contiguous()


def gen_conv(case, seed):
    name, N, C, K, dhw, k, s, p, d = case
    gen = torch.Generator().manual_seed(seed)
    x = rand32(gen, N, C, *dhw).requires_grad_(True)
    w = rand32(gen, K, C, *k).requires_grad_(True)
    y = torch.nn.functional.conv3d(x, w, stride=s, padding=p, dilation=d)
    gy = rand32(gen, *y.shape)
    y.backward(gy)
    params = np.array([N, C, K, *dhw, *k, *s, *p, *d], dtype=np.int64)
    write_fixture(os.path.join(OUT, name + ".bin"), {
        "params": params,
        "x": ndhwc(x.detach()).float(),
        "w": w.detach().permute(0, 2, 3, 4, 1).contiguous().float(),
        "gy": ndhwc(gy).float(),
        "y": ndhwc(y.detach()),
        "dx": ndhwc(x.grad),
        "dw": w.grad.permute(0, 2, 3, 4, 1).contiguous(),
    })


def gen_convt(case, seed):
    name, N, C, K, dhw, k, s, p = case
    gen = torch.Generator().manual_seed(seed)
    x = rand32(gen, N, C, *dhw).requires_grad_(True)
    w = rand32(gen, C, K, *k).requires_grad_(True)  # torch layout [C_in][K_out][kd][kh][kw]
    y = torch.nn.functional.conv_transpose3d(x, w, stride=s, padding=p)
    gy = rand32(gen, *y.shape)
    y.backward(gy)
    params = np.array([N, C, K, *dhw, *k, *s, *p, 1, 1, 1], dtype=np.int64)
    write_fixture(os.path.join(OUT, name + ".bin"), {
        "params": params,
        "x": ndhwc(x.detach()).float(),
        "w": w.detach().permute(1, 2, 3, 4, 0).contiguous().float(),
        "gy": ndhwc(gy).float(),
        "y": ndhwc(y.detach()),
        "dx": ndhwc(x.grad),
        "dw": w.grad.permute(1, 2, 3, 4, 0).contiguous(),
    })


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, c in enumerate(CONV_CASES):
        gen_conv(c, 1000 + i)
    for i, c in enumerate(CONVT_CASES):
        gen_convt(c, 2000 + i)
    print("wrote", len(CONV_CASES) + len(CONVT_CASES), "fixtures to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
