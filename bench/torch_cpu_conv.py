#!/usr/bin/python3
"""PyTorch CPU conv3d / conv_transpose3d timings on the 34 DynUNet layers at 128^3, next to dex's.

Run with Debian's python (torch 1.13, oneDNN):
  /usr/bin/python3 bench/torch_cpu_conv.py --threads 2 --repeats 3 --json torch.json
  /usr/bin/python3 bench/torch_cpu_conv.py --threads 2 --repeats 3 --json torch.json \
      --dex-json dex.json [--dex-json-1t dex1.json --torch-json-1t torch1.json] --out bench/results/cpu-conv-DATE.md

Each layer runs forward only (torch.no_grad) in the default layout and in channels_last_3d; the faster is
kept. Every timing is the minimum over --repeats runs after one warm-up; both wall time and process CPU time
(all threads) are recorded. The layer list mirrors bench/dynunet_shapes.h (same names, same order).
With --dex-json (Google Benchmark JSON from `dex_bench_cpu --benchmark_filter='^dynunet128'
--benchmark_out=dex.json --benchmark_out_format=json`) it writes the markdown comparison table.
"""
import argparse
import json
import time

F = [32, 64, 128, 256, 320, 320]


def dynunet_conv_shapes(P=128):
    """(name, transposed, C, K, (D, H, W), kernel, stride, pad) like bench/dynunet_shapes.h."""
    v = []

    def conv(name, C, K, dhw, k, s):
        v.append((name, False, C, K, dhw, (k, k, k), s, (1, 1, 1) if k == 3 else (0, 0, 0)))

    def convt(name, C, K, dhw, s):
        v.append((name, True, C, K, dhw, s, s, (0, 0, 0)))

    conv("input_block.conv1", 3, F[0], (P, P, P), 3, (1, 1, 1))
    conv("input_block.conv2", F[0], F[0], (P, P, P), 3, (1, 1, 1))
    conv("input_block.conv3", 3, F[0], (P, P, P), 1, (1, 1, 1))
    for i in range(4):
        S, cin, cout = P >> i, F[i], F[i + 1]
        b = "downsamples.%d" % i
        conv(b + ".conv1", cin, cout, (S, S, S), 3, (2, 2, 2))
        conv(b + ".conv2", cout, cout, (S // 2,) * 3, 3, (1, 1, 1))
        conv(b + ".conv3", cin, cout, (S, S, S), 1, (2, 2, 2))
    S = P >> 4
    conv("bottleneck.conv1", F[4], F[5], (S, S, S), 3, (2, 2, 1))
    conv("bottleneck.conv2", F[5], F[5], (S // 2, S // 2, S), 3, (1, 1, 1))
    conv("bottleneck.conv3", F[4], F[5], (S, S, S), 1, (2, 2, 1))
    for u in range(5):
        level = 4 - u
        S, cin, cout = P >> level, F[level + 1], F[level]
        b = "upsamples.%d" % u
        if u == 0:
            convt(b + ".transp_conv", cin, cout, (S // 2, S // 2, S), (2, 2, 1))
        else:
            convt(b + ".transp_conv", cin, cout, (S // 2,) * 3, (2, 2, 2))
        conv(b + ".conv_block.conv1", 2 * cout, cout, (S, S, S), 3, (1, 1, 1))
        conv(b + ".conv_block.conv2", cout, cout, (S, S, S), 3, (1, 1, 1))
    conv("output_block.conv", F[0], 2, (P, P, P), 1, (1, 1, 1))
    return v


def macs(layer):
    name, tr, C, K, dhw, k, s, p = layer
    kv = k[0] * k[1] * k[2]
    if tr:
        return dhw[0] * dhw[1] * dhw[2] * C * K * kv
    o = [(d + 2 * pp - kk) // ss + 1 for d, pp, kk, ss in zip(dhw, p, k, s)]
    return o[0] * o[1] * o[2] * C * K * kv


def time_torch(layers, threads, repeats):
    import torch
    import torch.nn.functional as Fn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = {}
    for layer in layers:
        name, tr, C, K, dhw, k, s, p = layer
        x = torch.rand(1, C, *dhw) * 2 - 1
        w = torch.rand(*((C, K) if tr else (K, C)), *k) * 0.1
        best = {}
        for fmt in ("default", "channels_last_3d"):
            xi, wi = x, w
            if fmt == "channels_last_3d":
                xi = x.contiguous(memory_format=torch.channels_last_3d)
                wi = w.contiguous(memory_format=torch.channels_last_3d)
            fn = (lambda: Fn.conv_transpose3d(xi, wi, stride=s, padding=p)) if tr else \
                (lambda: Fn.conv3d(xi, wi, stride=s, padding=p))
            walls, cpus = [], []
            with torch.no_grad():
                fn()  # warm-up (oneDNN primitive creation)
                for _ in range(repeats):
                    t0, c0 = time.perf_counter(), time.process_time()
                    y = fn()
                    walls.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
                    del y
            best[fmt] = (min(walls), min(cpus))
        fmt = min(best, key=lambda f: best[f][0])
        out[name] = {"wall_s": best[fmt][0], "cpu_s": best[fmt][1], "layout": fmt,
                     "wall_default_s": best["default"][0], "wall_cl3d_s": best["channels_last_3d"][0]}
        print("%-36s %9.1f ms wall  %9.1f ms cpu  (%s)" % (name, best[fmt][0] * 1e3, best[fmt][1] * 1e3, fmt),
              flush=True)
    return out


def load_dex(path):
    """Google Benchmark JSON -> {layer: {wall_s, cpu_s}} (min over repetitions) and reference extrapolations."""
    with open(path) as f:
        data = json.load(f)
    gemm, ref = {}, {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        parts = b["name"].split("/")
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
        if parts[0] == "dynunet128":
            cur = gemm.setdefault(parts[1], {"wall_s": 1e30, "cpu_s": 1e30})
            cur["wall_s"] = min(cur["wall_s"], b["real_time"] * scale)
            cur["cpu_s"] = min(cur["cpu_s"], b["cpu_time"] * scale)
        elif parts[0] == "dynunet128_ref":
            ref[parts[1]] = min(ref.get(parts[1], 1e30), b["extrap_s"])
    return gemm, ref


def write_markdown(path, layers, torch2, dex2, ref, torch1=None, dex1=None, note=""):
    rows = []
    tot = {"gemm": 0.0, "torch": 0.0, "ref": 0.0, "gemm1": 0.0, "torch1": 0.0}
    for layer in layers:
        name = layer[0]
        m = macs(layer)
        g, t = dex2[name]["wall_s"], torch2[name]["wall_s"]
        r = ref.get(name, float("nan"))
        tot["gemm"] += g
        tot["torch"] += t
        tot["ref"] += r
        row = "| %s | %s | %.3f | %.1f | %.1f | %.1f | %.2f | %.1f |" % (
            name, describe(layer), m / 1e9, g * 1e3, t * 1e3, r, g / t, 2 * m / g / 1e9)
        if torch1 and dex1:
            g1, t1 = dex1[name]["cpu_s"], torch1[name]["cpu_s"]
            tot["gemm1"] += g1
            tot["torch1"] += t1
            row += " %.1f | %.1f | %.2f |" % (g1 * 1e3, t1 * 1e3, g1 / t1)
        rows.append(row)
    hdr = "| layer | shape | GMAC | dex Gemm 2T wall ms | torch 2T wall ms | dex Reference s (extrap.) | Gemm/torch | Gemm GFLOP/s |"
    sep = "|---|---|---|---|---|---|---|---|"
    if torch1 and dex1:
        hdr += " dex Gemm 1T CPU ms | torch 1T CPU ms | 1T ratio |"
        sep += "---|---|---|"
    total = "| **total (34 layers)** | | %.2f | %.0f | %.0f | %.0f | %.2f | %.1f |" % (
        sum(macs(l) for l in layers) / 1e9, tot["gemm"] * 1e3, tot["torch"] * 1e3, tot["ref"],
        tot["gemm"] / tot["torch"], 2 * sum(macs(l) for l in layers) / tot["gemm"] / 1e9)
    if torch1 and dex1:
        total += " %.0f | %.0f | %.2f |" % (tot["gemm1"] * 1e3, tot["torch1"] * 1e3, tot["gemm1"] / tot["torch1"])
    with open(path, "w") as f:
        f.write(note)
        f.write("\n".join([hdr, sep] + rows + [total]) + "\n")


def describe(layer):
    name, tr, C, K, dhw, k, s, p = layer
    return "%s %d->%d k%s s%s in %s" % ("convT" if tr else "conv", C, K, "x".join(map(str, k)),
                                        ",".join(map(str, s)), "x".join(map(str, dhw)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write torch timings here")
    ap.add_argument("--torch-json", help="reuse torch timings (2 threads) instead of measuring")
    ap.add_argument("--torch-json-1t", help="torch timings with 1 thread (for the CPU-time columns)")
    ap.add_argument("--dex-json", help="dex_bench_cpu JSON, 2 threads")
    ap.add_argument("--dex-json-1t", help="dex_bench_cpu JSON, 1 thread")
    ap.add_argument("--dex-ref-json", help="dex_bench_cpu JSON holding the dynunet128_ref runs (default: --dex-json)")
    ap.add_argument("--only", help="substring filter on layer names")
    ap.add_argument("--out", help="markdown table path")
    ap.add_argument("--note", default="", help="file whose text goes above the table")
    a = ap.parse_args()
    layers = dynunet_conv_shapes(128)
    if a.only:
        layers = [l for l in layers if a.only in l[0]]
    if a.torch_json:
        with open(a.torch_json) as f:
            torch2 = json.load(f)
    else:
        torch2 = time_torch(layers, a.threads, a.repeats)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(torch2, f, indent=1)
    if a.dex_json and a.out:
        dex2, ref = load_dex(a.dex_json)
        if a.dex_ref_json:
            ref = load_dex(a.dex_ref_json)[1]
        torch1 = dex1 = None
        if a.torch_json_1t and a.dex_json_1t:
            with open(a.torch_json_1t) as f:
                torch1 = json.load(f)
            dex1, _ = load_dex(a.dex_json_1t)
        note = open(a.note).read() if a.note else ""
        write_markdown(a.out, layers, torch2, dex2, ref, torch1, dex1, note)
        print("wrote", a.out)


if __name__ == "__main__":
    main()
