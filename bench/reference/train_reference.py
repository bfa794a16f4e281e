#!/usr/bin/python3
"""Reference PyTorch training for the ktf benchmarks (Debian's /usr/bin/python3 + python3-torch).

Trains exactly the model of a ktf benchmark config on Fashion-MNIST from Debian's
dataset-fashion-mnist, with the same batch size, optimizer, epochs and thread count, the way a
careful PyTorch user writes it (tensors decoded once, batches by indexing, zero_grad(set_to_none),
loss summed on device and read once per epoch). Prints one JSON line of measurements.

  train_reference.py --model cnn --epochs 1 --threads 2 [--steps N] [--eval]
                     [--precision bf16] [--compile [--compile-mode reduce-overhead]]
                     [--device cuda]

--precision bf16 runs forward and loss under torch.autocast(device, torch.bfloat16), as PyTorch's
documentation shows mixed precision; --compile wraps the model in torch.compile (PyTorch 2.x),
--compile-mode passes its mode ("reduce-overhead": CUDA graphs). --device cuda keeps the decoded
data on the GPU (batches by indexing there) and synchronises before every clock reading.
"""
import contextlib
import argparse
import gzip
import json
import os
import resource
import time

T0 = time.perf_counter()  # as close to process start as Python allows; see --startup-base

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def read_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split):
    prefix = "train" if split == "train" else "t10k"
    x = torch.from_numpy(read_idx(f"{prefix}-images-idx3-ubyte.gz").copy()).float().div_(255)
    x = x.sub_(MEAN).div_(STD).unsqueeze(1).contiguous()
    y = torch.from_numpy(read_idx(f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64))
    return x, y


class CNN(nn.Module):
    # = configs/fashion_mnist_cnn.json / bench/configs/cnn.json
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 5 * 5, 128)
        self.drop = nn.Dropout(0.4)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(self.drop(F.relu(self.fc1(x.flatten(1)))))


def mlp(hidden):
    layers, width = [nn.Flatten()], 784
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    # small-input stem: 3x3 conv stride 1, no max pool (= ktf.networks.ResNet small_input)
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def build(model):
    if model == "cnn":
        return CNN()
    if model == "mlp":
        return mlp([256, 128])
    if model == "tiny":
        return mlp([32])
    if model == "resnet":
        return ResNet18()
    raise SystemExit(f"unknown model {model}")


def evaluate(net, x, y, autocast, batch=1000):
    net.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    with torch.inference_mode(), autocast():
        for i in range(0, len(x), batch):
            correct += (net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()
    net.train()
    return correct.item() / len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = full epochs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval", action="store_true", help="evaluate on the test set after every epoch")
    p.add_argument("--target", type=float, default=0.90)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (PyTorch 2.x)")
    p.add_argument("--compile-mode", default=None, help="torch.compile's mode (reduce-overhead)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--warmup", type=int, default=0,
                   help="leave the first N steps out of the timed throughput (torch.compile's "
                        "compilation happens there)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    x, y = (t.to(dev) for t in load("train"))
    xt, yt = (t.to(dev) for t in load("test")) if a.eval else (None, None)
    t_data = time.perf_counter()
    net = build(a.model).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr, eps=1e-7)
    if a.compile:
        net = torch.compile(net, mode=a.compile_mode)
    autocast = ((lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if a.precision == "bf16"
                else contextlib.nullcontext)
    n = len(x)
    steps = 0
    first_step = None
    train_time = 0.0
    samples = 0
    history = []
    time_to_target = None
    for epoch in range(a.epochs):
        perm = torch.randperm(n, device=dev)
        loss_sum = torch.zeros((), device=dev)
        sync()
        t_epoch = time.perf_counter()
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            with autocast():
                out = net(xb)
                loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            steps += 1
            samples += len(idx)
            if first_step is None:
                first_step = time.perf_counter()
            if steps == a.warmup:  # restart the clock after the warm-up steps
                sync()
                t_epoch, train_time, samples = time.perf_counter(), 0.0, 0
            if a.steps and steps >= a.steps:
                break
        sync()
        train_time += time.perf_counter() - t_epoch
        entry = {"epoch": epoch + 1, "loss": loss_sum.item() / max(1, steps), "train_seconds": train_time}
        if a.eval:
            acc = evaluate(net, xt, yt, autocast)
            entry["val_accuracy"] = acc
            if time_to_target is None and acc >= a.target:
                time_to_target = train_time
        history.append(entry)
        if a.steps and steps >= a.steps:
            break
    print(json.dumps({
        "impl": "pytorch",
        "model": a.model,
        "torch": torch.__version__,
        "precision": a.precision,
        "compile": a.compile,
        "compile_mode": a.compile_mode,
        "device": a.device,
        "samples": samples,
        "steps": steps,
        "train_seconds": train_time,
        "samples_per_second": samples / train_time,
        "seconds_per_step": train_time / max(1, steps - a.warmup),
        "data_seconds": t_data - T0,
        "startup_to_first_step": first_step - T0,
        "startup_minus_data": first_step - t_data,
        "time_to_target": time_to_target,
        "history": history,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))


if __name__ == "__main__":
    main()
