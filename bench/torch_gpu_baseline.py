#!/usr/bin/env python3
"""PyTorch same-card baseline for dex-bench's "model computation" rows (issue 8): the bundle's DynUNet forward
(1 x 3 x S^3, random input and MONAI-initialised weights, no pre/post) timed in PyTorch on the GPU machine.

The network is MONAI's DynUNet written in plain torch with MONAI's module structure (copied from
scripts/gen_fixtures_dynunet.py; MONAI itself is not needed). Rows, each with torch.backends.cudnn.benchmark = True,
under torch.inference_mode():
  eager_fp32            NCDHW fp32, PyTorch's defaults (cuDNN may use TF32 for convs: allow_tf32 = True by default)
  eager_fp32_strict     the same with cudnn.allow_tf32 = False and matmul.allow_tf32 = False (true fp32)
  eager_fp32_cl         fp32, model and input in channels_last_3d (NDHWC, dex's layout)
  amp                   torch.autocast fp16 (the bundle's "AMP" row), NCDHW
  amp_cl                torch.autocast fp16, channels_last_3d
  half_cl               model.half(), fp16 input, channels_last_3d (no autocast casts)
Each row: --warmup forwards, then the median of --runs forwards timed with CUDA events (on the CPU: wall clock).
Prints one JSON object on stdout: {"device", "torch", "cudnn", "size", "rows": [{"name", "median_ms", "min_ms",
"runs", "logits_rel_err_vs_strict"} or {"name", "error"} for a row that raised], "published_a100_ms": {...}}.
Progress goes to stderr.

Rehearsal without a GPU:  /usr/bin/python3 bench/torch_gpu_baseline.py --device cpu --size 32 --runs 2
(on the CPU autocast runs bfloat16, the only autocast dtype torch's CPU backend has, and "amp_dtype" says so;
torch 1.13's CPU bf16 conv_transpose3d fails in channels_last_3d, so half_cl reports an error there).
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn


# ---- MONAI's DynUNet (scripts/gen_fixtures_dynunet.py, without the fixture code) --------------------------------
def get_padding(k, s):
    return tuple(int((kk - ss + 1) / 2) for kk, ss in zip(k, s))


class Convolution(nn.Module):
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

        def create_skips(downsamples, upsamples, bottleneck):
            if len(downsamples) == 0:
                return bottleneck
            return DynUNetSkipLayer(downsamples[0], upsamples[0], create_skips(downsamples[1:], upsamples[1:], bottleneck))

        self.skip_layers = create_skips([self.input_block] + list(self.downsamples), self.upsamples[::-1], self.bottleneck)
        for m in self.modules():  # MONAI initialize_weights
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, a=0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        return self.output_block(self.skip_layers(x))


def bundle_dynunet():
    """The bundle's network (spec §2): 3 -> 2 channels, filters 32..320, strides 1, 2, 2, 2, 2, (2,2,1)."""
    return DynUNet(3, 2, [3] * 6, [1, 2, 2, 2, 2, (2, 2, 1)], [2, 2, 2, 2, (2, 2, 1)], [32, 64, 128, 256, 320, 320])


# The bundle README's model-computation rows (A100 80GB, ms), for the ratios in dex-bench's table.
PUBLISHED_A100_MS = {"pytorch_fp32": 147.52, "pytorch_amp": 40.32, "trt_fp32": 28.87, "trt_fp16": 11.94}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def time_forward(fn, device, warmup, runs):
    """Median/min ms of fn() over `runs` after `warmup` calls; CUDA events on the GPU, wall clock on the CPU."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (rehearsal)")
    ap.add_argument("--size", type=int, default=128, help="cubic input size, a multiple of 32 (default 128)")
    ap.add_argument("--runs", type=int, default=20, help="timed forwards per row (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed forwards per row first (default 3)")
    ap.add_argument("--rows", default="eager_fp32,eager_fp32_strict,eager_fp32_cl,amp,amp_cl,half_cl",
                    help="comma-separated subset of the rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.size <= 0 or args.size % 32:
        ap.error("--size must be a positive multiple of 32 (the network's total stride is 32x32x16), got %d" % args.size)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_gpu_baseline: no CUDA device visible to torch (use --device cpu for a rehearsal)")
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

    net = bundle_dynunet().eval().to(device)
    x = torch.rand(1, 3, args.size, args.size, args.size, device=device)
    rows = [r for r in args.rows.split(",") if r]
    known = {"eager_fp32", "eager_fp32_strict", "eager_fp32_cl", "amp", "amp_cl", "half_cl"}
    for r in rows:
        if r not in known:
            ap.error("unknown row %r (known: %s)" % (r, ", ".join(sorted(known))))

    def run_row(name):
        tf32 = name != "eager_fp32_strict"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32 and torch.backends.cuda.matmul.allow_tf32
        cl = name.endswith("_cl")
        fmt = torch.channels_last_3d if cl else torch.contiguous_format
        model = bundle_dynunet().eval().to(device)
        model.load_state_dict(net.state_dict())
        model = model.to(memory_format=fmt)
        xi = x.contiguous(memory_format=fmt)
        if name == "half_cl":
            model = model.to(amp_dtype)
            xi = xi.to(amp_dtype)

        def fwd():
            with torch.inference_mode():
                if name.startswith("amp"):
                    with torch.autocast(device_type=device.type, dtype=amp_dtype):
                        return model(xi)
                return model(xi)

        med, mn = time_forward(fwd, device, args.warmup, args.runs)
        out = fwd().float()
        return med, mn, out

    # Reference logits for the accuracy column: strict fp32 (computed once, even if that row is not timed).
    torch.backends.cudnn.allow_tf32 = False
    with torch.inference_mode():
        ref = net(x).float()
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (%d threads)" % torch.get_num_threads(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "size": args.size,
        "amp_dtype": str(amp_dtype).replace("torch.", ""),
        "warmup": args.warmup,
        "rows": [],
        "published_a100_ms": PUBLISHED_A100_MS,
    }
    for name in rows:
        log("torch_gpu_baseline: %s ..." % name)
        try:
            med, mn, out = run_row(name)
        except RuntimeError as e:  # one failing row (out of memory, an unsupported kernel) must not lose the rest
            msg = str(e).splitlines()[0]
            log("  failed: %s" % msg)
            result["rows"].append({"name": name, "error": msg})
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        rel = float((out - ref).norm() / ref.norm())
        result["rows"].append({"name": name, "median_ms": round(med, 3), "min_ms": round(mn, 3), "runs": args.runs,
                               "logits_rel_err_vs_strict": rel})
        log("  median %.3f ms, min %.3f ms, logits rel. error vs strict fp32 %.2e" % (med, mn, rel))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
