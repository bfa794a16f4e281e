#!/usr/bin/python3
"""PyTorch's side of tests/functional/interop_test.cpp (Debian's python3-torch): loads a ktf run's
weights file with torch.jit.load, copies its state_dict into the equivalent torch.nn model (strict:
every name and shape must match) and prints the softmax of the model's outputs on the examples of
an IDX file of float32 inputs, one line per example.

  torch_interop.py <weights.pt> <inputs.idx> <hidden,...> <batchnorm 0|1> <num_outputs>
"""
import struct
import sys

import torch


class MLP(torch.nn.Module):
    """ktf.networks.MLP: dense<i> (+ bn<i>) + ReLU per hidden layer, then head."""

    def __init__(self, inputs, hidden, batchnorm, outputs):
        super().__init__()
        self.hidden = len(hidden)
        self.batchnorm = batchnorm
        for i, h in enumerate(hidden, 1):
            setattr(self, "dense%d" % i, torch.nn.Linear(inputs, h))
            if batchnorm:
                setattr(self, "bn%d" % i, torch.nn.BatchNorm1d(h))
            inputs = h
        self.head = torch.nn.Linear(inputs, outputs)

    def forward(self, x):
        x = x.flatten(1)
        for i in range(1, self.hidden + 1):
            x = getattr(self, "dense%d" % i)(x)
            if self.batchnorm:
                x = getattr(self, "bn%d" % i)(x)
            x = torch.relu(x)
        return self.head(x)


def read_idx_float(path):
    data = open(path, "rb").read()
    assert data[:3] == b"\0\0\x0d", "not a float32 IDX file"
    ndim = data[3]
    dims = struct.unpack(">%dI" % ndim, data[4:4 + 4 * ndim])
    values = struct.unpack(">%df" % (len(data[4 + 4 * ndim:]) // 4), data[4 + 4 * ndim:])
    return torch.tensor(values, dtype=torch.float32).reshape(dims)


def main():
    weights, inputs, hidden, batchnorm, outputs = sys.argv[1:6]
    hidden = [int(h) for h in hidden.split(",")]
    scripted = torch.jit.load(weights)
    state = scripted.state_dict()
    x = read_idx_float(inputs)
    model = MLP(x[0].numel(), hidden, batchnorm == "1", int(outputs))
    model.load_state_dict(state, strict=True)
    model.eval()
    print("names", " ".join(sorted(state)))
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    for row in p:
        print("p", " ".join(repr(float(v)) for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
