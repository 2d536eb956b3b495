#!/usr/bin/env python3
"""PyTorch same-card baseline for dex's conv benchmarks (run on the GPU machine by scripts/gpu-check.sh).

Every DynUNet conv layer (bench/dynunet_shapes.h, mirrored below) at 128^3 and 64^3, batch 1: conv3d fprop in fp16,
channels_last_3d (NDHWC, like dex), torch.backends.cudnn.benchmark = True (autotuned), CUDA-event median of
--iters runs, each after an L2 flush, on random data. Prints a markdown table (layer, us, TFLOP/s, the cuDNN kernel
names seen for one call) and writes JSON next to it when --json is given.
"""
import argparse
import json
import sys


def dynunet_convs(patch):
    """(name, C, K, D, H, W, k, stride, transposed) in forward order, as bench/dynunet_shapes.h."""
    f = [32, 64, 128, 256, 320, 320]
    P = patch
    v = [("input_block.conv1", 3, f[0], P, P, P, 3, (1, 1, 1), False),
         ("input_block.conv2", f[0], f[0], P, P, P, 3, (1, 1, 1), False),
         ("input_block.conv3", 3, f[0], P, P, P, 1, (1, 1, 1), False)]
    for i in range(4):
        S, cin, cout = P >> i, f[i], f[i + 1]
        b = "downsamples.%d" % i
        v += [(b + ".conv1", cin, cout, S, S, S, 3, (2, 2, 2), False),
              (b + ".conv2", cout, cout, S // 2, S // 2, S // 2, 3, (1, 1, 1), False),
              (b + ".conv3", cin, cout, S, S, S, 1, (2, 2, 2), False)]
    S = P >> 4
    v += [("bottleneck.conv1", f[4], f[5], S, S, S, 3, (2, 2, 1), False),
          ("bottleneck.conv2", f[5], f[5], S // 2, S // 2, S, 3, (1, 1, 1), False),
          ("bottleneck.conv3", f[4], f[5], S, S, S, 1, (2, 2, 1), False)]
    for u in range(5):
        level = 4 - u
        S, cin, cout = P >> level, f[level + 1], f[level]
        b = "upsamples.%d" % u
        if u == 0:
            v.append((b + ".transp_conv", cin, cout, S // 2, S // 2, S, 0, (2, 2, 1), True))
        else:
            v.append((b + ".transp_conv", cin, cout, S // 2, S // 2, S // 2, 0, (2, 2, 2), True))
        v += [(b + ".conv_block.conv1", 2 * cout, cout, S, S, S, 3, (1, 1, 1), False),
              (b + ".conv_block.conv2", cout, cout, S, S, S, 3, (1, 1, 1), False)]
    v.append(("output_block.conv", f[0], 2, P, P, P, 1, (1, 1, 1), False))
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", default="128,64")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", default="")
    ap.add_argument("--no-kernel-names", action="store_true")
    a = ap.parse_args()
    import torch
    import torch.nn.functional as F
    if not torch.cuda.is_available():
        print("torch_conv_baseline: no CUDA device visible to PyTorch", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(0)
    print("# PyTorch %s, cuDNN %s, %s, %d SMs" % (torch.__version__, torch.backends.cudnn.version(), props.name,
                                                  props.multi_processor_count))
    flush = torch.empty(int(2 * getattr(props, "L2_cache_size", 50 << 20)), dtype=torch.uint8, device=dev)
    g = torch.Generator(device=dev).manual_seed(2026)
    rows = []
    print("| patch | layer | shape | us (median) | TFLOP/s | kernels |")
    print("|---|---|---|---|---|---|")
    for patch in [int(p) for p in a.patches.split(",")]:
        for (name, C, K, D, H, W, k, s, transposed) in dynunet_convs(patch):
            x = (torch.rand((1, C, D, H, W), generator=g, device=dev) * 2 - 1).half()
            x = x.contiguous(memory_format=torch.channels_last_3d)
            if transposed:
                w = (torch.rand((C, K) + tuple(s), generator=g, device=dev) * 2 - 1).half()
                w = w.contiguous(memory_format=torch.channels_last_3d)
                fn = lambda: F.conv_transpose3d(x, w, stride=s)
                macs = D * H * W * C * K * s[0] * s[1] * s[2]
            else:
                w = (torch.rand((K, C, k, k, k), generator=g, device=dev) * 2 - 1).half()
                w = w.contiguous(memory_format=torch.channels_last_3d)
                pad = 1 if k == 3 else 0
                fn = lambda: F.conv3d(x, w, stride=s, padding=pad)
                od = (D + 2 * pad - k) // s[0] + 1
                oh = (H + 2 * pad - k) // s[1] + 1
                ow = (W + 2 * pad - k) // s[2] + 1
                macs = od * oh * ow * K * k * k * k * C
            with torch.no_grad():
                for _ in range(3):
                    fn()
                torch.cuda.synchronize()
                times = []
                for _ in range(a.iters):
                    flush.zero_()
                    e0 = torch.cuda.Event(enable_timing=True)
                    e1 = torch.cuda.Event(enable_timing=True)
                    e0.record()
                    fn()
                    e1.record()
                    e1.synchronize()
                    times.append(e0.elapsed_time(e1) * 1e3)
                kernels = ""
                if not a.no_kernel_names:
                    from torch.profiler import profile, ProfilerActivity
                    with profile(activities=[ProfilerActivity.CUDA]) as prof:
                        fn()
                        torch.cuda.synchronize()
                    names = sorted({e.name for e in prof.events() if e.device_type.name == "CUDA"})
                    kernels = "; ".join(n[:60] for n in names)[:200]
            times.sort()
            us = times[len(times) // 2]
            tf = 2.0 * macs / (us * 1e-6) * 1e-12
            shape = "%s %d->%d k%s s%s in %dx%dx%d" % ("convT" if transposed else "conv", C, K, k if k else "=s",
                                                       ",".join(map(str, s)), D, H, W)
            rows.append(dict(patch=patch, layer=name, shape=shape, us=us, tflops=tf, kernels=kernels))
            print("| %d | %s | %s | %.1f | %.1f | %s |" % (patch, name, shape, us, tf, kernels.replace("|", "/")))
            sys.stdout.flush()
            del x, w
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(torch=torch.__version__, cudnn=torch.backends.cudnn.version(), device=props.name,
                           rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
