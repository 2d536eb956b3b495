#!/usr/bin/python3
"""Whole-model parity fixtures for dex's DynUNet (tests/layers/test_dynunet_parity.cpp, tests/train/...).

MONAI is not importable here, so this is MONAI's DynUNet (spec §2, monai/networks/nets/dynunet.py and
blocks/dynunet_block.py) rewritten in plain torch with the same module names, so state_dict keys match,
including the `skip_layers.*` aliases (DynUNetSkipLayer registers the same modules again).

Writes (run with /usr/bin/python3, Debian's torch):
  tests/data/dynunet/tiny.fix      tiny DynUNet (filters 4-8-16-32, strides 1,2,2,(2,2,1)), batch 2, 16x16x12 input:
                                   weights, input, target, logits, Dice+CE loss, every gradient, weights after one
                                   Adam step (lr 1e-4). Reference computed in float64 from the float32 weights/input.
  tests/data/dynunet/tiny_model.pt torch.save of the tiny net's MONAI-style state_dict (68-key style: with aliases)
  tests/data/dynunet/full128.fix   the bundle's network at 1x3x128^3 with closed-form weights and input (see
                                   closed_form_weight / closed_form_input): per-channel logit statistics and 1000
                                   sampled voxels (float32 forward, 2 threads; float64 at 128^3 needs ~29 GB
                                   im2col buffers in torch's CPU conv3d).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "dynunet")


# ---- MONAI's DynUNet, module names preserved -------------------------------------------------------------
def get_padding(k, s):
    return tuple(int((kk - ss + 1) / 2) for kk, ss in zip(k, s))


class Convolution(nn.Module):  # monai.networks.blocks.Convolution with conv_only-like use: holds `.conv`
    def __init__(self, cin, cout, k, s, bias=False, transposed=False):
        super().__init__()
        if transposed:
            self.conv = nn.ConvTranspose3d(cin, cout, k, s, padding=get_padding(k, s), output_padding=0, bias=bias)
        else:
            self.conv = nn.Conv3d(cin, cout, k, s, padding=get_padding(k, s), bias=bias)

    def forward(self, x):
        return self.conv(x)


def norm(c):
    return nn.InstanceNorm3d(c, affine=False, track_running_stats=False, eps=1e-5)


class UnetResBlock(nn.Module):
    def __init__(self, cin, cout, k, s):
        super().__init__()
        self.conv1 = Convolution(cin, cout, k, s)
        self.conv2 = Convolution(cout, cout, k, (1, 1, 1))
        self.lrelu = nn.LeakyReLU(0.01)
        self.norm1 = norm(cout)
        self.norm2 = norm(cout)
        self.downsample = cin != cout or any(x != 1 for x in s)
        if self.downsample:
            self.conv3 = Convolution(cin, cout, (1, 1, 1), s)
            self.norm3 = norm(cout)

    def forward(self, x):
        out = self.lrelu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        res = self.norm3(self.conv3(x)) if self.downsample else x
        return self.lrelu(out + res)


class UnetBasicBlock(nn.Module):
    def __init__(self, cin, cout, k, s):
        super().__init__()
        self.conv1 = Convolution(cin, cout, k, s)
        self.conv2 = Convolution(cout, cout, k, (1, 1, 1))
        self.lrelu = nn.LeakyReLU(0.01)
        self.norm1 = norm(cout)
        self.norm2 = norm(cout)

    def forward(self, x):
        out = self.lrelu(self.norm1(self.conv1(x)))
        return self.lrelu(self.norm2(self.conv2(out)))


class UnetUpBlock(nn.Module):
    def __init__(self, cin, cout, k, up_k):
        super().__init__()
        self.transp_conv = Convolution(cin, cout, up_k, up_k, transposed=True)
        self.conv_block = UnetBasicBlock(cout + cout, cout, k, (1, 1, 1))

    def forward(self, x, skip):
        out = self.transp_conv(x)
        return self.conv_block(torch.cat((out, skip), dim=1))


class UnetOutBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = Convolution(cin, cout, (1, 1, 1), (1, 1, 1), bias=True)

    def forward(self, x):
        return self.conv(x)


class DynUNetSkipLayer(nn.Module):
    def __init__(self, downsample, upsample, next_layer):
        super().__init__()
        self.downsample = downsample
        self.next_layer = next_layer
        self.upsample = upsample

    def forward(self, x):
        d = self.downsample(x)
        return self.upsample(self.next_layer(d), d)


def t3(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v, v)


class DynUNet(nn.Module):
    def __init__(self, cin, cout, kernels, strides, up_kernels, filters):
        super().__init__()
        k = [t3(x) for x in kernels]
        s = [t3(x) for x in strides]
        u = [t3(x) for x in up_kernels]
        f = filters
        L = len(s)
        self.input_block = UnetResBlock(cin, f[0], k[0], s[0])
        self.downsamples = nn.ModuleList([UnetResBlock(f[i], f[i + 1], k[i + 1], s[i + 1]) for i in range(L - 2)])
        self.bottleneck = UnetResBlock(f[L - 2], f[L - 1], k[L - 1], s[L - 1])
        self.upsamples = nn.ModuleList(
            [UnetUpBlock(f[L - 1 - j], f[L - 2 - j], k[L - 1 - j], u[L - 2 - j]) for j in range(L - 1)])
        self.output_block = UnetOutBlock(f[0], cout)

        def create_skips(index, downsamples, upsamples, bottleneck):
            if len(downsamples) == 0:
                return bottleneck
            return DynUNetSkipLayer(downsamples[0], upsamples[0],
                                    create_skips(index + 1, downsamples[1:], upsamples[1:], bottleneck))

        self.skip_layers = create_skips(0, [self.input_block] + list(self.downsamples), self.upsamples[::-1],
                                        self.bottleneck)
        for m in self.modules():  # MONAI initialize_weights
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, a=0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        return self.output_block(self.skip_layers(x))


def canonical_params(net):
    """name -> parameter, canonical names only (named_parameters drops the shared aliases)."""
    return dict(net.named_parameters())


# ---- MONAI DiceCELoss(to_onehot_y=True, softmax=True), spec §9 ---------------------------------------------
def dice_ce(logits, target):
    n, c = logits.shape[:2]
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(target.long(), c).permute(0, 4, 1, 2, 3).to(logits.dtype)
    red = (2, 3, 4)
    inter = (p * onehot).sum(red)
    denom = onehot.sum(red) + p.sum(red)
    dice = (1.0 - (2.0 * inter + 1e-5) / (denom + 1e-5)).mean()
    ce = F.cross_entropy(logits, target.long())
    return dice + ce, dice, ce


# ---- tiny parity fixture ---------------------------------------------------------------------------------
TINY = dict(cin=3, cout=2, kernels=[3, 3, 3, 3], strides=[1, 2, 2, [2, 2, 1]], up_kernels=[2, 2, [2, 2, 1]],
            filters=[4, 8, 16, 32])


def tiny_fixture():
    torch.manual_seed(1234)
    net = DynUNet(**TINY).float()
    N, D, H, W = 2, 16, 16, 12
    x = torch.randn(N, 3, D, H, W, dtype=torch.float32)
    zz, yy, xx = torch.meshgrid(torch.arange(D), torch.arange(H), torch.arange(W), indexing="ij")
    target = torch.zeros(N, D, H, W, dtype=torch.uint8)
    target[0] = (((zz - 7.0) / 5) ** 2 + ((yy - 8.0) / 4) ** 2 + ((xx - 5.0) / 3) ** 2 < 1).to(torch.uint8)
    target[1] = (((zz - 9.0) / 4) ** 2 + ((yy - 6.0) / 5) ** 2 + ((xx - 7.0) / 4) ** 2 < 1).to(torch.uint8)
    params32 = {k: v.detach().clone() for k, v in canonical_params(net).items()}

    # Reference in float64 from the float32 values.
    net64 = DynUNet(**TINY).double()
    net64.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    logits = net64(x.double())
    loss, dice, ce = dice_ce(logits, target)
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in canonical_params(net64).items()}
    opt = torch.optim.Adam(net64.parameters(), lr=1e-4)
    opt.step()
    after = {k: p.detach().clone() for k, p in canonical_params(net64).items()}

    fx = {"x": x, "target": target, "logits": logits.detach(), "loss": torch.tensor([loss.item()], dtype=torch.float64),
          "dice": torch.tensor([dice.item()], dtype=torch.float64), "ce": torch.tensor([ce.item()], dtype=torch.float64)}
    for k, v in params32.items():
        fx["w." + k] = v
    for k, v in grads.items():  # float32 is plenty: its rounding is far below the tolerances
        fx["g." + k] = v.float()
    for k, v in after.items():
        fx["a." + k] = v.float()
    write_fixture(os.path.join(OUT, "tiny.fix"), fx)
    # A MONAI-style checkpoint: full state_dict incl. skip_layers aliases (shared storage), float32.
    torch.save(net.state_dict(), os.path.join(OUT, "tiny_model.pt"))
    print("tiny: %d parameters, %d state_dict keys, loss %.6f" %
          (sum(p.numel() for p in net.parameters()), len(net.state_dict()), loss.item()))


# ---- full-size forward with closed-form weights ------------------------------------------------------------
FULL = dict(cin=3, cout=2, kernels=[3] * 6, strides=[1, 2, 2, 2, 2, [2, 2, 1]], up_kernels=[2, 2, 2, 2, [2, 2, 1]],
            filters=[32, 64, 128, 256, 320, 320])


def splitmix64(z):
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def closed_form_weight(shape, layer_id, std):
    """w[i] = std * sqrt(3) * (2 u - 1), u = (splitmix64(i + 2^32 * layer_id) >> 11) * 2^-53: uniform with the
    kaiming std, i the flat index in PyTorch layout, layer_id the index of the tensor in sorted-name order (bias:
    std 0.1). A hash, not a smooth function of i (sin(a i + b) weights cancel over smooth inputs and turn fp32
    rounding into 1e-4 relative errors after instance norm)."""
    n = int(np.prod(shape))
    z = splitmix64(np.arange(n, dtype=np.uint64) + np.uint64(layer_id << 32))
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return (std * math.sqrt(3.0) * (2.0 * u - 1.0)).astype(np.float32).reshape(shape)


def closed_form_input(D, H, W):
    """x[c, d, h, w] = sin(0.05 d + 0.07 (c+1) h + 0.11 w + c) * cos(0.03 (d - w) (c + 1)), float32."""
    d = np.arange(D, dtype=np.float64)[:, None, None]
    h = np.arange(H, dtype=np.float64)[None, :, None]
    w = np.arange(W, dtype=np.float64)[None, None, :]
    chans = [np.sin(0.05 * d + 0.07 * (c + 1) * h + 0.11 * w + c) * np.cos(0.03 * (d - w) * (c + 1)) for c in range(3)]
    return np.stack(chans).astype(np.float32)[None]


def kaiming_std(shape):
    fan_in = shape[1] * int(np.prod(shape[2:]))
    return math.sqrt(2.0 / (1 + 0.01 ** 2)) / math.sqrt(fan_in)


def full_fixture():
    torch.set_num_threads(2)
    net = DynUNet(**FULL).float().eval()
    params = canonical_params(net)
    assert sum(p.numel() for p in params.values()) == 31001282
    with torch.no_grad():
        for lid, name in enumerate(sorted(params)):
            p = params[name]
            std = kaiming_std(p.shape) if p.dim() == 5 else 0.1
            p.copy_(torch.from_numpy(closed_form_weight(tuple(p.shape), lid, std)))
        x = torch.from_numpy(closed_form_input(128, 128, 128))
        y = net(x)[0].double().numpy()  # [2, 128, 128, 128], float32 forward
    S = 128 ** 3
    idx = (np.arange(1000, dtype=np.int64) * 2654435761 + 12345) % S
    flat = y.reshape(2, S)
    fx = {"mean": flat.mean(1), "std": flat.std(1), "min": flat.min(1), "max": flat.max(1),
          "sample_index": idx, "sample": flat[:, idx].T.copy()}  # sample: [1000][2]
    write_fixture(os.path.join(OUT, "full128.fix"), fx)
    print("full128: mean", fx["mean"], "std", fx["std"], "min", fx["min"], "max", fx["max"])


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    if "--full-only" not in sys.argv:
        tiny_fixture()
    if "--tiny-only" not in sys.argv:
        full_fixture()
