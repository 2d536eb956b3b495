#!/usr/bin/env python3
"""Short markdown summary of a scripts/gpu-check.sh run (runs on the GPU machine; plain python3, no packages).

Reads the Google Benchmark JSON of dex_bench_cuda, the PyTorch baseline JSON (bench/cuda/torch_conv_baseline.py),
the gtest log and the SASS counts, and prints one table per patch: per conv layer, dex v1 / v2 (f16, bf16), cuDNN
f16 NDHWC and PyTorch (cudnn.benchmark) in microseconds, and best dex over cuDNN (< 1 means dex is faster).
"""
import json
import os
import re
import sys


def load_bench(paths):
    rows = {}
    ctx = {}
    for p in paths:
        try:
            text = open(p).read()
        except OSError as e:
            print("<!-- could not read %s: %s -->" % (p, e))
            continue
        d = None
        # A run cut off by its timeout leaves the JSON without its closing brackets: try to close it.
        cut = text.rfind("\n    }")  # end of the last complete benchmark record (Google Benchmark's layout)
        for cand in (text, text.rstrip().rstrip(",") + "]}", text[:cut] + "\n    }\n  ]\n}" if cut > 0 else ""):
            try:
                d = json.loads(cand)
                break
            except ValueError:
                pass
        if d is None:
            print("<!-- could not parse %s -->" % p)
            continue
        ctx.update(d.get("context", {}))
        for b in d.get("benchmarks", []):
            name = b["name"].replace("/manual_time", "")
            parts = name.split("/")
            if len(parts) < 4:
                continue
            if not parts[2].isdigit():  # ops16/<dtype>/... rows have no patch: not part of the conv tables
                continue
            op, impl, patch, layer = parts[0], parts[1], int(parts[2]), "/".join(parts[3:])
            if b.get("error_occurred"):
                rows[(op, impl, patch, layer)] = ("skip", b.get("error_message", "")[:80])
            else:
                rows[(op, impl, patch, layer)] = (b.get("us", b.get("real_time")), b.get("TFLOP/s"))
    return rows, ctx


def fmt(v):
    if v is None:
        return "-"
    if v[0] == "skip":
        return "skip"
    return "%.0f" % v[0]


def main():
    if len(sys.argv) < 5:
        print("usage: gpu_summary.py tests.log sass.txt torch.json bench.json [bench2.json ...]")
        return 2
    tests_log, sass, torch_json = sys.argv[1:4]
    rows, ctx = load_bench(sys.argv[4:])
    torch_rows = {}
    try:
        t = json.load(open(torch_json))
        for r in t["rows"]:
            torch_rows[(r["patch"], r["layer"])] = r["us"]
        torch_info = "PyTorch %s, cuDNN %s" % (t.get("torch"), t.get("cudnn"))
    except Exception as e:
        torch_info = "PyTorch baseline missing (%s)" % e
    # The benchmark JSON names the device; without one (benchmarks skipped) gpu-check passes nvidia-smi's name.
    print("## dex CUDA check: %s" % ctx.get("dex_device", os.environ.get("DEX_GPU_NAME", "?")))
    try:
        log = open(tests_log).read()
        m = re.findall(r"\[  PASSED  \] (\d+) test", log)
        f = re.findall(r"\[  FAILED  \] (\d+) test", log)
        s = re.findall(r"\[  SKIPPED \] (\d+) test", log)
        # One summary line per test binary (dex_tests_cuda, then the dex_tests_infer GPU rows): add them up.
        print("tests: %s passed, %d failed, %d skipped (%d binaries)" % (sum(map(int, m)) if m else "?",
                                                                        sum(map(int, f)), sum(map(int, s)), len(m)))
        for line in log.splitlines():
            if line.startswith("[  FAILED  ]") and "listed below" not in line:
                print("  " + line)
    except OSError:
        print("tests: no log")
    try:
        print("SASS tensor-core instructions per conv kernel: see sass.txt;",
              "; ".join(l.strip() for l in open(sass) if "v2" in l)[:400])
    except OSError:
        pass
    print("baseline: %s. Times in us (event median/mean, L2 flushed); ratio = best dex / cuDNN.\n" % torch_info)
    layers = []
    for (op, impl, patch, layer) in rows:
        if op == "conv3d_fprop" and (patch, layer) not in layers:
            layers.append((patch, layer))
    for patch in sorted({p for p, _ in layers}, reverse=True):
        print("| %d^3 layer | v1 f16 | v2 f16 | v2 bf16 | cuDNN f16 | torch f16 | ratio |" % patch)
        print("|---|---|---|---|---|---|---|")
        tot_dex = tot_cudnn = 0.0
        for p, layer in layers:
            if p != patch:
                continue
            g = lambda impl: rows.get(("conv3d_fprop", impl, patch, layer))
            v1, v2, b2, cd = g("f16_v1"), g("f16_v2"), g("bf16_v2"), g("cudnn_f16")
            dex = [v[0] for v in (v1, v2) if v and v[0] != "skip"]
            best = min(dex) if dex else None
            ratio = "-"
            if best is not None and cd and cd[0] != "skip":
                ratio = "%.2f" % (best / cd[0])
                tot_dex += best
                tot_cudnn += cd[0]
            tu = torch_rows.get((patch, layer))
            print("| %s | %s | %s | %s | %s | %s | %s |" % (layer, fmt(v1), fmt(v2), fmt(b2), fmt(cd),
                                                          "%.0f" % tu if tu else "-", ratio))
        if tot_cudnn > 0:
            print("| **sum (layers with both)** | | | | %.0f | | %.2f |" % (tot_cudnn, tot_dex / tot_cudnn))
        print()
    other = sorted(k for k in rows if k[0] != "conv3d_fprop")
    if other:
        print("| other kernels | impl | patch | us | TFLOP/s |")
        print("|---|---|---|---|---|")
        for (op, impl, patch, layer) in other:
            v = rows[(op, impl, patch, layer)]
            if v[0] == "skip":
                print("| %s %s | %s | %d | skip | |" % (op, layer, impl, patch))
            else:
                print("| %s %s | %s | %d | %.0f | %.1f |" % (op, layer, impl, patch, v[0], v[1] or 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
