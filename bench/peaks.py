#!/usr/bin/python3
"""Ceilings for the CPU benchmarks: the peak GFLOP/s of the kernels a training step calls.

Measures, in the calling Python's PyTorch (Debian's 1.13 or the 2.x wheel) and under the BLAS
kernels its environment selects (OPENBLAS_CORETYPE):
  - matmul fp32 and bf16: a 2048x2048 @ 2048x2048 torch.mm (fp32 in the BLAS; bf16 in oneDNN where
    the CPU has bf16 instructions);
  - conv fp32 and bf16: a ResNet-style 3x3 convolution, 64 -> 64 channels on 28x28 maps, batch 64,
    forward and backward (oneDNN), the layer that dominates ResNet-18's step here.
Best of --reps timed calls after warm-up. Prints one JSON line, with the BLAS kernels and oneDNN's
ISA as the libraries report them.

  peaks.py [--threads 2] [--reps 10]
"""
import argparse
import ctypes
import ctypes.util
import json
import time

import torch
import torch.nn.functional as F


def best_seconds(fn, reps):
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def openblas_core():
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "threads": a.threads, "mkl": torch.backends.mkl.is_available(),
           "openblas_core": openblas_core() if not torch.backends.mkl.is_available() else None}
    n = 2048
    for dtype, key in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        x, y = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        out[f"matmul_{key}_gflops"] = 2 * n ** 3 / best_seconds(lambda: torch.mm(x, y), a.reps) / 1e9
    # 3x3 conv, 64 -> 64 channels, 28x28, batch 64, padding 1: forward + backward (input and weight
    # gradients) = 3x the forward's multiply-adds.
    b, c, h = 64, 64, 28
    flops = 2 * b * c * c * 9 * h * h
    for dtype, key in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        inp = torch.randn(b, c, h, h).to(dtype).requires_grad_()
        w = (torch.randn(c, c, 3, 3) * 0.05).to(dtype).requires_grad_()
        out[f"conv_fwd_{key}_gflops"] = flops / best_seconds(
            lambda: F.conv2d(inp, w, padding=1), a.reps) / 1e9

        def fwd_bwd():
            F.conv2d(inp, w, padding=1).sum().backward()

        out[f"conv_fwd_bwd_{key}_gflops"] = 3 * flops / best_seconds(fwd_bwd, a.reps) / 1e9
    print(json.dumps(out))


if __name__ == "__main__":
    main()
