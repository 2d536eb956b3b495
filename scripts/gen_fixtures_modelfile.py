#!/usr/bin/python3
"""Fixtures for the model-file readers (layers/safetensors.*, layers/torch_checkpoint.*, layers/state_dict.*).

Run with Debian's torch: /usr/bin/python3 scripts/gen_fixtures_modelfile.py  (writes tests/data/modelfile/).
No MONAI: a plain-torch module tree reproduces MONAI DynUNet's state_dict naming, including the
`skip_layers.*` aliases that share storage with the canonical names (spec §2.3: 68 keys for 35 tensors at
full depth), with tiny channel counts so every file stays a few kB.

Files:
  dynunet_tiny.pt          torch.save(net.state_dict())                 68 keys, 35 tensors (full depth)
  dynunet_tiny_model.pt    torch.save({"model": sd, "optimizer": ..., "epoch": 3})  MONAI CheckpointSaver style
  dynunet_tiny_sdkey.pt    torch.save({"state_dict": sd})                older checkpoints
  dynunet_tiny_fp16.pt     state dict converted to fp16
  dynunet_shallow.pt       2 downsamples (3 up blocks): the alias table at another depth
  strided.pt               views: transposed, sliced with step, storage offset, shared storage, 0-d, empty,
                           fp16 and bf16 views, an int64 tensor
  deflate.pt               dynunet_tiny.pt re-zipped with deflate-compressed entries (python zipfile)
  zip64.pt                 dynunet_tiny.pt re-zipped by hand in zip64 form (zip64 extra fields, zip64 EOCD)
  legacy.pt                torch.save(..., _use_new_zipfile_serialization=False): must be rejected
  torchscript.pt           torch.jit.save of a scripted module: must be rejected
  module.pt                torch.save(whole nn.Module): must be rejected
  handmade.safetensors     written byte by byte below (F32, F16, BF16; offsets not in key order; metadata)
  expected.fix             expected values (scripts/fixture_io.py format): "<file>/<key>" per tensor, and the
                           int64 vector "<file>/#keys" = number of keys in the file (0-d tensors are stored with
                           shape [1]: fixture_io's np.ascontiguousarray makes them 1-d)
  dynunet_tiny_keys.txt, dynunet_shallow_keys.txt   every state_dict key, aliases included, in torch's order
  handmade_config.json     the JSON string stored in handmade.safetensors' __metadata__["config"]
Reproducible: seeded (torch.manual_seed / numpy default_rng); rerunning rewrites identical tensors (zip timestamps
in deflate.pt, torchscript.pt, legacy.pt differ).
"""
import io
import json
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "modelfile")


# ---- a module tree with MONAI DynUNet's names ----------------------------------------------------------
class Convolution(nn.Module):  # MONAI's Convolution: the conv sits in a child called "conv"
    def __init__(self, cin, cout, k, s, bias=False, transposed=False):
        super().__init__()
        if transposed:
            self.conv = nn.ConvTranspose3d(cin, cout, k, s, bias=bias)
        else:
            self.conv = nn.Conv3d(cin, cout, k, s, padding=k // 2, bias=bias)


class UnetResBlock(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.conv1 = Convolution(cin, cout, 3, s)
        self.conv2 = Convolution(cout, cout, 3, 1)
        self.conv3 = Convolution(cin, cout, 1, s)
        self.norm1 = nn.InstanceNorm3d(cout)  # affine-free: no state
        self.norm2 = nn.InstanceNorm3d(cout)
        self.norm3 = nn.InstanceNorm3d(cout)


class UnetBasicBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = Convolution(cin, cout, 3, 1)
        self.conv2 = Convolution(cout, cout, 3, 1)


class UnetUpBlock(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.transp_conv = Convolution(cin, cout, s, s, transposed=True)
        self.conv_block = UnetBasicBlock(2 * cout, cout)


class UnetOutBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = Convolution(cin, cout, 1, 1, bias=True)


class DynUNetSkipLayer(nn.Module):  # attribute order as MONAI: downsample, next_layer, upsample
    def __init__(self, downsample, upsample, next_layer):
        super().__init__()
        self.downsample = downsample
        self.next_layer = next_layer
        self.upsample = upsample


def create_skips(downsamples, upsamples, bottleneck):
    if len(downsamples) == 0:
        return bottleneck
    return DynUNetSkipLayer(downsamples[0], upsamples[0], create_skips(downsamples[1:], upsamples[1:], bottleneck))


class TinyDynUNet(nn.Module):
    def __init__(self, filters, strides, cin=3, cout=2):
        super().__init__()
        self.input_block = UnetResBlock(cin, filters[0], strides[0])
        self.downsamples = nn.ModuleList(
            [UnetResBlock(filters[i], filters[i + 1], strides[i + 1]) for i in range(len(filters) - 2)])
        self.bottleneck = UnetResBlock(filters[-2], filters[-1], strides[-1])
        ups = []
        for i in range(len(filters) - 1):  # upsamples.0 is the deepest
            j = len(filters) - 1 - i
            ups.append(UnetUpBlock(filters[j], filters[j - 1], strides[j]))
        self.upsamples = nn.ModuleList(ups)
        self.output_block = UnetOutBlock(filters[0], cout)
        self.skip_layers = create_skips([self.input_block] + list(self.downsamples), self.upsamples[::-1],
                                        self.bottleneck)


def make_net(filters, strides, seed):
    torch.manual_seed(seed)
    net = TinyDynUNet(filters, strides)
    with torch.no_grad():  # distinctive values so a mix-up of tensors cannot pass
        for p in net.parameters():
            p.copy_(torch.randn_like(p))
    return net


def snapshot(sd):
    """state_dict() shares storage with the live parameters: copy before the optimizer step changes them."""
    return {k: v.detach().clone() for k, v in sd.items()}


def canonical_only(sd):
    return {k: v for k, v in sd.items() if not k.startswith("skip_layers.")}


# ---- zip re-packaging -----------------------------------------------------------------------------------
def zip_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_deflate_zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)


def write_zip64(path, entries):
    """Stored entries; every size/offset field 0xFFFFFFFF with the real values in zip64 extra fields, and
    a zip64 end-of-central-directory record + locator (EOCD fields 0xFFFF / 0xFFFFFFFF)."""
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        nb = name.encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = len(out)
        extra_local = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(nb),
                           len(extra_local))
        out += nb + extra_local + data
        extra_c = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                               len(nb), len(extra_c), 0, 0, 0, 0, 0xFFFFFFFF)
        central += nb + extra_c
    cd_offset = len(out)
    out += central
    z64_offset = len(out)
    n = len(entries)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, z64_offset, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(path, "wb") as f:
        f.write(out)


# ---- safetensors by hand ----------------------------------------------------------------------------------
def write_safetensors_by_hand(path, tensors, metadata, order):
    """tensors: name -> (dtype string, numpy array of that dtype's bits); data laid out in `order`."""
    header = {}
    blob = bytearray()
    for name in order:
        dt, arr = tensors[name]
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.write(blob)


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}

    def expect(file, sd, n_keys):
        for k, v in sd.items():
            expected[f"{file}/{k}"] = v.detach().float().numpy().astype(np.float32).copy()
        expected[f"{file}/#keys"] = np.array([n_keys], dtype=np.int64)

    # Full depth (4 downsamples + bottleneck, 5 up blocks) like the bundle, tiny channel counts.
    net = make_net([2, 3, 4, 5, 6, 6], [1, 2, 2, 2, 2, [2, 2, 1]], seed=1)
    sd = net.state_dict()  # saved as is: the aliases share storage in the file
    assert len(sd) == 68 and len(canonical_only(sd)) == 35, (len(sd), len(canonical_only(sd)))
    torch.save(sd, os.path.join(OUT, "dynunet_tiny.pt"))
    sd = snapshot(sd)
    expect("dynunet_tiny.pt", canonical_only(sd), 68)
    # the alias names too, so a test can check the exact 68-name set
    with open(os.path.join(OUT, "dynunet_tiny_keys.txt"), "w") as f:
        f.write("\n".join(sd.keys()) + "\n")

    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    opt.step()  # optimizer state: step counters, exp_avg, exp_avg_sq (MONAI saves it next to "model")
    sd_after = net.state_dict()
    torch.save({"model": sd_after, "optimizer": opt.state_dict(), "epoch": 3, "best": 0.5, "tag": "x", "ok": True,
                "nothing": None}, os.path.join(OUT, "dynunet_tiny_model.pt"))
    expect("dynunet_tiny_model.pt", canonical_only(sd_after), 68)
    torch.save({"state_dict": canonical_only(sd)}, os.path.join(OUT, "dynunet_tiny_sdkey.pt"))
    expect("dynunet_tiny_sdkey.pt", canonical_only(sd), 35)

    half = net.half().state_dict()
    torch.save(half, os.path.join(OUT, "dynunet_tiny_fp16.pt"))
    expect("dynunet_tiny_fp16.pt", canonical_only(half), 68)

    shallow = make_net([2, 3, 4, 5], [1, 2, 2, [2, 2, 1]], seed=2).state_dict()
    assert len(shallow) == 2 * 23 - 2, len(shallow)  # 23 tensors, all but the output head aliased
    torch.save(shallow, os.path.join(OUT, "dynunet_shallow.pt"))
    expect("dynunet_shallow.pt", canonical_only(shallow), len(shallow))
    with open(os.path.join(OUT, "dynunet_shallow_keys.txt"), "w") as f:
        f.write("\n".join(shallow.keys()) + "\n")

    # Views: the reader must honour storage offsets and strides, and dtype conversion.
    g = torch.Generator().manual_seed(3)
    base = torch.randn(4, 6, 5, generator=g)
    strided = {
        "base": base,
        "transposed": base.transpose(0, 2),        # strides (1, 5, 30)
        "stepped": base[1:, ::2, 1::2],            # storage offset + steps
        "row": base[2, 3],                         # 1-d view deep inside
        "scalar": base[1, 2, 3],                   # 0-d
        "empty": base[:, 2:2],                     # zero-size
        "expanded": torch.arange(3.0).reshape(3, 1).expand(3, 4),  # stride 0
        "half_t": base.half().permute(2, 0, 1),    # fp16, non-contiguous
        "bf16": base[0].bfloat16(),
        "double": torch.linspace(-2, 2, 7, dtype=torch.float64),
        "long": torch.tensor([1, -2, 3], dtype=torch.int64),
    }
    torch.save(strided, os.path.join(OUT, "strided.pt"))
    expect("strided.pt", strided, len(strided))

    entries = zip_entries(os.path.join(OUT, "dynunet_tiny.pt"))
    write_deflate_zip(os.path.join(OUT, "deflate.pt"), entries)
    expect("deflate.pt", canonical_only(sd), 68)
    write_zip64(os.path.join(OUT, "zip64.pt"), entries)
    expect("zip64.pt", canonical_only(sd), 68)
    with zipfile.ZipFile(os.path.join(OUT, "zip64.pt")) as z:  # python's zipfile must accept our zip64 file
        assert z.testzip() is None

    torch.save({"w": torch.ones(2)}, os.path.join(OUT, "legacy.pt"), _use_new_zipfile_serialization=False)

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(Small()), os.path.join(OUT, "torchscript.pt"))
    torch.save(TinyDynUNet([2, 2, 2], [1, 2, 2]), os.path.join(OUT, "module.pt"))

    # safetensors written by hand: data order differs from key order; F32, F16, BF16; metadata strings.
    rng = np.random.default_rng(4)
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((5,)).astype(np.float16)
    c = torch.from_numpy(rng.standard_normal((3, 2)).astype(np.float32)).bfloat16()
    c_bits = c.view(torch.int16).numpy().view(np.uint16)
    s = np.array(2.5, dtype=np.float32)  # 0-d
    tensors = {"a.weight": ("F32", a), "b.half": ("F16", b), "c.bf16": ("BF16", c_bits), "scalar": ("F32", s)}
    config = {"filters": [32, 64, 128, 256, 320, 320], "in_channels": 3, "labels": {"spleen": 1, "background": 0}}
    write_safetensors_by_hand(os.path.join(OUT, "handmade.safetensors"), tensors,
                              {"config": json.dumps(config), "format": "pt"},
                              order=["c.bf16", "a.weight", "scalar", "b.half"])
    expected["handmade.safetensors/a.weight"] = a
    expected["handmade.safetensors/b.half"] = b.astype(np.float32)
    expected["handmade.safetensors/c.bf16"] = c.float().numpy()
    expected["handmade.safetensors/scalar"] = s
    expected["handmade.safetensors/#keys"] = np.array([4], dtype=np.int64)
    with open(os.path.join(OUT, "handmade_config.json"), "w") as f:
        f.write(json.dumps(config))

    write_fixture(os.path.join(OUT, "expected.fix"), expected)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
