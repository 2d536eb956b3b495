#!/usr/bin/python3
"""PyTorch CPU timing of the bundle's DynUNet at 1x3x128^3, next to dex's bench/bench_dynunet.cpp.

  /usr/bin/python3 bench/torch_cpu_dynunet.py --threads 2 --repeats 3 [--size 128]

The network is scripts/gen_fixtures_dynunet.py's plain-torch copy of MONAI's DynUNet (same modules, same
kaiming init). forward: torch.no_grad, eval; step: forward + DiceCE + backward + Adam(lr 1e-4). Each timing is
the minimum over --repeats after one warm-up; wall and process CPU time (all threads) are printed, and the peak
resident memory of the process.
"""
import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from gen_fixtures_dynunet import FULL, DynUNet, dice_ce  # noqa: E402


def timed(fn, repeats):
    fn()  # warm-up
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--only", choices=["forward", "step", "both"], default="both")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = DynUNet(**FULL).float()
    P = a.size
    x = torch.rand(1, 3, P, P, P) * 2 - 1
    target = (torch.arange(P ** 3).reshape(1, P, P, P) // 7 % 5 == 0).to(torch.uint8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    print("torch %s, %d threads, 1x3x%d^3, %d parameters" % (torch.__version__, a.threads, P,
                                                            sum(p.numel() for p in net.parameters())))

    def forward():
        net.eval()
        with torch.no_grad():
            net(x)

    def step():
        net.train()
        opt.zero_grad(set_to_none=False)
        loss, _, _ = dice_ce(net(x), target)
        loss.backward()
        opt.step()

    if a.only in ("forward", "both"):
        w, c = timed(forward, a.repeats)
        print("forward:    wall %.2f s  cpu %.2f s" % (w, c))
    if a.only in ("step", "both"):
        w, c = timed(step, a.repeats)
        print("train step: wall %.2f s  cpu %.2f s" % (w, c))
    print("peak RSS %.2f GiB" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20))


if __name__ == "__main__":
    main()
