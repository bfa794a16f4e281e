#!/usr/bin/python3
"""Where a training step's time goes: the benchmark CNN's and ResNet-18's steps in fp32 and bf16.

Trains the reference models of bench/reference/train_reference.py (the same libtorch and the
same oneDNN and BLAS kernels ktf calls) on real Fashion-MNIST batches under the PyTorch profiler,
and sums the self CPU time per step of each op class: convolutions (forward, backward), matrix
products, pooling, batch norm, element-wise ops, dtype casts and layout reorders (autocast's
copies, oneDNN reorders), the optimizer, and the rest. Prints one JSON line per model and
precision; bench/notes.md quotes them against the ceilings of bench/peaks.py.

  profile_steps.py [--threads 2] [--steps 20] [--models cnn,resnet] [--precisions fp32,bf16]
"""
import argparse
import collections
import contextlib
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "reference")]
import train_reference as R  # noqa: E402

CLASSES = [
    ("conv backward", ("convolution_backward", "mkldnn_convolution_backward")),
    ("conv forward", ("mkldnn_convolution", "aten::_convolution", "aten::convolution")),
    ("matmul", ("aten::addmm", "aten::mm", "aten::matmul", "aten::linear", "aten::bmm")),
    ("pooling", ("max_pool", "avg_pool", "adaptive_avg")),
    ("batch norm", ("batch_norm",)),
    ("casts and reorders", ("aten::to", "aten::_to_copy", "aten::copy_", "reorder", "to_dense",
                            "aten::contiguous", "aten::clone")),
    ("optimizer", ("adam", "aten::_foreach", "addcdiv", "addcmul", "aten::lerp", "aten::sqrt")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("element-wise", ("relu", "threshold", "aten::add", "aten::mul", "aten::div", "aten::sub",
                      "dropout", "bernoulli", "aten::fill_", "aten::zero_", "aten::sum")),
]


def classify(name):
    lower = name.lower()
    for label, keys in CLASSES:
        if any(k.lower() in lower for k in keys):
            return label
    return "other"


def profile(model, precision, threads, steps):
    torch.manual_seed(0)
    x, y = R.load("train")
    net = R.build(model)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16"
                else contextlib.nullcontext)

    def step(i):
        idx = torch.arange(i * 64, (i + 1) * 64)
        with autocast():
            loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(5):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(5 + i)
    wall = (time.perf_counter() - t) / steps
    with torch.autograd.profiler.profile() as prof:
        for i in range(steps):
            step(5 + steps + i)
    per_class = collections.Counter()
    for evt in prof.key_averages():
        per_class[classify(evt.key)] += evt.self_cpu_time_total / 1e3 / steps
    total = sum(per_class.values())
    return {"model": model, "precision": precision, "torch": torch.__version__, "threads": threads,
            "step_ms_unprofiled": 1e3 * wall, "step_ms_profiled_ops": total,
            "ms_per_step": {k: round(v, 3) for k, v in per_class.most_common()}}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--models", default="cnn,resnet")
    p.add_argument("--precisions", default="fp32,bf16")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for model in a.models.split(","):
        for precision in a.precisions.split(","):
            steps = a.steps if model != "resnet" else max(3, a.steps // 4)
            print(json.dumps(profile(model, precision, a.threads, steps)), flush=True)


if __name__ == "__main__":
    main()
