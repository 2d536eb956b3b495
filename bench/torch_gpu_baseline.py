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
Progress goes to stderr. --json PATH also writes it to a file: `dex-bench --device cuda --torch PATH` puts these rows
in its table beside dex's, with ratios (same device, same run).

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


import os  # noqa: E402

# MONAI's DynUNet in plain torch: the same module tree as the fixtures (scripts/gen_fixtures_dynunet.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from gen_fixtures_dynunet import FULL, DynUNet  # noqa: E402


def bundle_dynunet():
    """The bundle's network (spec §2): 3 -> 2 channels, filters 32..320, strides 1, 2, 2, 2, 2, (2,2,1)."""
    return DynUNet(**FULL)


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
    ap.add_argument("--json", default="", help="also write the JSON to this file (dex-bench --torch reads it)")
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
