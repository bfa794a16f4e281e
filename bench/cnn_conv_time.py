#!/usr/bin/python3
"""How much of the benchmark CNN's training step its two convolutions take on their own.

The CNN's GFLOP/s target counts convolution and dense arithmetic. This times, in Debian's PyTorch
(the same libtorch 1.13.1 and oneDNN kernels ktf calls), the forward and backward passes of the
CNN's two convolutions alone at batch 64 on a real batch with the gradients of a real step (conv1
needs no input gradient, as in training), and the
2048² matmul peak, and prints what share of that peak the step could reach if everything else in
it (pooling, ReLUs, dense layers, dropout, loss, optimizer, batch) took no time at all, and how
long everything else may take for the step to reach 75 % of the peak.

  bench/cnn_conv_time.py [--threads 2] [--reps 30]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import train_reference as R  # noqa: E402  (the reference CNN and data loading)

# = bench/bench.py's CNN_FWD_FLOPS: conv1 26x26x32 from 1 channel, conv2 11x11x64 from 32, dense.
FWD_FLOPS = 2 * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 32 * 9 + 1600 * 128 + 128 * 10)


def best_of(fn, reps):
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=30)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    batch = 64
    # The tensors the convolutions see in training: a real batch and the gradients one step of the
    # reference CNN sends back to them (sparse after ReLU and max-pool; oneDNN's backward is much
    # slower on dense random gradients, which training never produces).
    x, y = R.load("test")
    x, y = x[:batch].contiguous(), y[:batch]
    net = R.CNN()
    out1 = net.conv1(x)
    out1.retain_grad()
    pooled = F.max_pool2d(F.relu(out1), 2)
    out2 = net.conv2(pooled)
    out2.retain_grad()
    z = F.max_pool2d(F.relu(out2), 2)
    F.cross_entropy(net.fc2(net.drop(F.relu(net.fc1(z.flatten(1))))), y).backward()
    g1, g2 = out1.grad.clone(), out2.grad.clone()
    h = pooled.detach().requires_grad_()
    w1, b1 = net.conv1.weight, net.conv1.bias
    w2, b2 = net.conv2.weight, net.conv2.bias

    def convs():
        F.conv2d(x, w1, b1).backward(g1)
        F.conv2d(h, w2, b2).backward(g2)

    conv_best, conv_median = best_of(convs, a.reps)
    m1, m2 = torch.randn(2048, 2048), torch.randn(2048, 2048)
    mm_best, _ = best_of(lambda: m1 @ m2, 10)
    peak = 2 * 2048**3 / mm_best
    step_flops = 3 * FWD_FLOPS * batch
    budget = step_flops / (0.75 * peak)
    print(json.dumps({
        "threads": a.threads,
        "conv_fwd_bwd_ms_best": conv_best * 1e3,
        "conv_fwd_bwd_ms_median": conv_median * 1e3,
        "matmul_peak_gflops": peak / 1e9,
        "step_gflop": step_flops / 1e9,
        "ceiling_share_of_peak_convs_only": step_flops / conv_median / peak,
        "step_ms_for_75_percent": budget * 1e3,
        "ms_left_for_everything_else_at_75_percent": (budget - conv_median) * 1e3,
    }, indent=1))


if __name__ == "__main__":
    main()
