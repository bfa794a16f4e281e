#!/usr/bin/python3
"""How much of the benchmark CNN's training step its two convolutions take.

The CNN's GFLOP/s target counts convolution and dense arithmetic. This trains the reference CNN
(bench/reference/train_reference.py: the same libtorch 1.13.1 and the same oneDNN convolution
kernels ktf calls) on real Fashion-MNIST batches under the PyTorch profiler and sums, per step, the
time of the convolution forward and backward ops. It prints what share of the 2048² matmul peak
the step could reach if everything else in it (pooling, ReLUs, dense layers, dropout, loss,
optimizer, batch) took no time at all, and how long everything else may take for the step to
reach 75 % of the peak.

(Timing the two convolutions alone in a loop, outside a training step, gave 1.5-2x these times
and is not used: oneDNN's backward ran much slower there.)

  bench/cnn_conv_time.py [--threads 2] [--steps 60]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "reference")]
import train_reference as R  # noqa: E402  (the reference CNN and data loading)
from bench import CNN_FWD_FLOPS as FWD_FLOPS  # noqa: E402  (the report's FLOP count)
CONV_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=60)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    batch = 64
    x, y = R.load("train")
    net = R.CNN()
    opt = torch.optim.Adam(net.parameters(), lr=0.001, eps=1e-7)
    perm = torch.randperm(len(x))

    def step(i):
        idx = perm[i * batch:(i + 1) * batch]
        loss = F.cross_entropy(net(x.index_select(0, idx)), y.index_select(0, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(5):
        step(i)
    with torch.autograd.profiler.profile() as prof:
        t = time.perf_counter()
        for i in range(a.steps):
            step(5 + i)
        wall = time.perf_counter() - t
    conv_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in CONV_OPS)
    conv = conv_us / 1e6 / a.steps
    m1, m2 = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        m1 @ m2
    best = min(timed(lambda: m1 @ m2) for _ in range(10))
    peak = 2 * 2048**3 / best
    step_flops = 3 * FWD_FLOPS * batch
    budget = step_flops / (0.75 * peak)
    print(json.dumps({
        "threads": a.threads,
        "steps": a.steps,
        "conv_ms_per_step": conv * 1e3,
        "profiled_step_ms": wall / a.steps * 1e3,
        "matmul_peak_gflops": peak / 1e9,
        "step_gflop": step_flops / 1e9,
        "ceiling_share_of_peak_convs_only": step_flops / conv / peak,
        "step_ms_for_75_percent": budget * 1e3,
        "ms_left_for_everything_else_at_75_percent": (budget - conv) * 1e3,
    }, indent=1))


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
