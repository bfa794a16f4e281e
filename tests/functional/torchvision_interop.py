#!/usr/bin/python3
"""PyTorch's side of the torchvision test in tests/functional/interop_test.cpp (Debian's
python3-torch and python3-torchvision): builds the torchvision model that `ktf-host
--export-weights` named as the network's equivalent, loads the exported state_dict into it with
torch.load and strict names and shapes, and prints the softmax of its outputs on the examples of an
IDX file of float32 inputs, one line per example.

  torchvision_interop.py <state_dict.pt> <inputs.idx> "<reference>"

<reference> is export's text: "torchvision.models.resnet18(num_classes=10)", optionally followed by
" with <statement> and <statement>..." (e.g. "model.maxpool = torch.nn.Identity()").
"""
import sys

import torch
import torchvision

from torch_interop import read_idx_float  # beside this script


def main():
    path, inputs, reference = sys.argv[1:4]
    constructor, _, changes = reference.partition(" with ")
    assert constructor.startswith("torchvision.models."), constructor
    model = eval(constructor, {"torchvision": torchvision, "torch": torch})
    for statement in filter(None, changes.split(" and ")):
        exec(statement, {"torch": torch, "model": model})
    state = torch.load(path)
    print("type", type(state).__name__, "tensors", len(state))
    print("order", "same" if list(state) == list(model.state_dict()) else "differs")
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model(read_idx_float(inputs)), 1)
    for row in p:
        print("p", " ".join(repr(float(v)) for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
