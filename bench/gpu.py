#!/usr/bin/env python3
"""ktf against PyTorch on one GPU, in one invocation (run by scripts/gpu/device_check.sh).

Same model, data, batch size, optimizer and precision on both sides (bench/configs/*.json and
bench/reference/train_reference.py), each trained for two epochs of Fashion-MNIST with the data
on the GPU; the second epoch is timed (the first holds cuDNN's autotuning, CUDA graph capture and
torch.compile's compilation). Cases run alternating, --reps times each:

  CNN  fp32: ktf eager (cuda_graphs false), ktf with CUDA graphs, PyTorch eager,
             PyTorch torch.compile(mode="reduce-overhead")
  ResNet bf16: ktf (autocast bf16) against PyTorch eager autocast bf16 (and fp32 both)
  CNN  time to 0.915 test accuracy: configs/fashion_mnist_cnn.json on ktf, wall time

Writes docs/benchmarks-gpu.json and the section of docs/benchmarks.md between
<!-- gpu:begin --> and <!-- gpu:end --> (with the GPU's name and the commands).

  bench/gpu.py --host BUILD/ktf-host --plugins BUILD/plugins [--reps 2] [--out docs]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "bench", "reference", "train_reference.py")


def run(cmd, env=None):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"gpu bench: {' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-4000:]}")
    return out.stdout, wall


def ktf(a, config, name, extra=()):
    run_dir = os.path.join(a.work, name)
    subprocess.run(["rm", "-rf", run_dir])
    out, wall = run([a.host, "--plugins", a.plugins, "-c", config, "--device", "cuda", "-o",
                     run_dir, "--quiet", "--seed", "1"] + list(extra))
    epochs = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    log = open(os.path.join(run_dir, "log.txt")).read()
    last = epochs[-1]
    return {"samples_per_second": last["samples_per_second"],
            "ms_per_step": 1000 * last["train_seconds"] / last["train_steps"],
            "wall_seconds": wall, "epochs": epochs,
            "graphs": [l for l in log.splitlines() if "cuda graphs" in l]}


def reference(a, model, extra=()):
    # Two epochs, the first left out of the timing (--warmup: its steps).
    out, wall = run([sys.executable, REFERENCE, "--model", model, "--device", "cuda", "--epochs",
                     "2", "--warmup", "938", "--threads", "8"] + list(extra))
    r = json.loads(out.strip().splitlines()[-1])
    r["ms_per_step"] = 1000 * r["seconds_per_step"]
    r["wall_seconds"] = wall
    return r


def two_epochs(loop="ktf.train.KerasTrainLoop"):
    return ["--set", f"/0/train_loop/{loop}/num_epochs=2"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--plugins", required=True)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--work", default="/tmp/ktf-gpu-bench")
    p.add_argument("--out", default=os.path.join(ROOT, "docs"))
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    import torch
    gpu = torch.cuda.get_device_name(0)
    cnn, resnet = (os.path.join(ROOT, "bench", "configs", f"{m}.json") for m in ("cnn", "resnet"))
    graphs_off = ["--set", "/0/train_loop/ktf.train.KerasTrainLoop/cuda_graphs=false"]
    cases = {
        "cnn_ktf_eager": lambda: ktf(a, cnn, "cnn_eager", two_epochs() + graphs_off),
        "cnn_ktf_graphs": lambda: ktf(a, cnn, "cnn_graphs", two_epochs()),
        "cnn_torch_eager": lambda: reference(a, "cnn"),
        "cnn_torch_compile_ro": lambda: reference(a, "cnn", ["--compile", "--compile-mode",
                                                             "reduce-overhead"]),
        "resnet_ktf_bf16": lambda: ktf(a, resnet, "resnet_bf16",
                                       two_epochs() + ["--precision", "bf16"]),
        "resnet_torch_bf16": lambda: reference(a, "resnet", ["--precision", "bf16"]),
        "resnet_ktf_fp32": lambda: ktf(a, resnet, "resnet_fp32", two_epochs()),
        "resnet_torch_fp32": lambda: reference(a, "resnet"),
    }
    results = {k: [] for k in cases}
    for rep in range(a.reps):
        for name, fn in cases.items():
            r = fn()
            results[name].append(r)
            print(f"[gpu bench] rep {rep + 1} {name}: {r['ms_per_step']:.3f} ms/step", flush=True)
    med = {k: statistics.median(r["ms_per_step"] for r in v) for k, v in results.items()}
    # Time to 0.915 on the shipped CNN config (10 epochs, test accuracy after each).
    target = ktf(a, os.path.join(ROOT, "configs", "fashion_mnist_cnn.json"), "cnn_target")
    elapsed, to_target = 0.0, None
    for e in target["epochs"]:
        elapsed += e["train_seconds"]
        if to_target is None and e.get("val_accuracy", 0) >= 0.915:
            to_target = {"epoch": e["epoch"], "train_seconds": elapsed}
    ratios = {
        "resnet_bf16_vs_torch_eager_bf16": med["resnet_torch_bf16"] / med["resnet_ktf_bf16"],
        "resnet_fp32_vs_torch_eager_fp32": med["resnet_torch_fp32"] / med["resnet_ktf_fp32"],
        "cnn_graphs_vs_torch_eager": med["cnn_torch_eager"] / med["cnn_ktf_graphs"],
        "cnn_graphs_vs_torch_compile_reduce_overhead":
            med["cnn_torch_compile_ro"] / med["cnn_ktf_graphs"],
        "cnn_eager_vs_torch_eager": med["cnn_torch_eager"] / med["cnn_ktf_eager"],
    }
    report = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
              "date": time.strftime("%Y-%m-%d"), "reps": a.reps, "ms_per_step_median": med,
              "speedups": ratios, "cnn_to_0915": to_target,
              "cnn_target_wall_seconds": target["wall_seconds"],
              "cnn_target_final_val_accuracy": target["epochs"][-1].get("val_accuracy"),
              "graphs_log": results["cnn_ktf_graphs"][0]["graphs"], "runs": results}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "benchmarks-gpu.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    lines = [
        "<!-- gpu:begin (bench/gpu.py writes this section) -->",
        f"## GPU: {gpu} (PyTorch {torch.__version__}, CUDA {torch.version.cuda}), {report['date']}",
        "",
        "Reproduce on a GPU machine: `bash .deps/device_check.sh` (scripts/gpu/device_check.sh), "
        "which runs `bench/gpu.py --host /tmp/b/ktf-host --plugins /tmp/b/plugins`. Second of two "
        f"epochs timed, median of {a.reps} alternating runs; speed-up = PyTorch time / ktf time.",
        "",
        "| case | ktf ms/step | PyTorch ms/step | speed-up |",
        "|---|---|---|---|",
        f"| CNN fp32, ktf CUDA graphs vs PyTorch eager | {med['cnn_ktf_graphs']:.3f} | "
        f"{med['cnn_torch_eager']:.3f} | {ratios['cnn_graphs_vs_torch_eager']:.2f}x |",
        f"| CNN fp32, ktf CUDA graphs vs torch.compile(reduce-overhead) | "
        f"{med['cnn_ktf_graphs']:.3f} | {med['cnn_torch_compile_ro']:.3f} | "
        f"{ratios['cnn_graphs_vs_torch_compile_reduce_overhead']:.2f}x |",
        f"| CNN fp32, ktf eager vs PyTorch eager | {med['cnn_ktf_eager']:.3f} | "
        f"{med['cnn_torch_eager']:.3f} | {ratios['cnn_eager_vs_torch_eager']:.2f}x |",
        f"| ResNet bf16 autocast, eager both | {med['resnet_ktf_bf16']:.3f} | "
        f"{med['resnet_torch_bf16']:.3f} | {ratios['resnet_bf16_vs_torch_eager_bf16']:.2f}x |",
        f"| ResNet fp32, eager both | {med['resnet_ktf_fp32']:.3f} | "
        f"{med['resnet_torch_fp32']:.3f} | {ratios['resnet_fp32_vs_torch_eager_fp32']:.2f}x |",
        "",
        f"configs/fashion_mnist_cnn.json on ktf (CUDA graphs automatic): 0.915 test accuracy "
        f"{'at epoch %d after %.1f s of training' % (to_target['epoch'], to_target['train_seconds']) if to_target else 'not reached'}"
        f"; the whole 10-epoch run took {target['wall_seconds']:.1f} s of wall time, final "
        f"accuracy {report['cnn_target_final_val_accuracy']}.",
        "<!-- gpu:end -->",
    ]
    md = os.path.join(a.out, "benchmarks.md")
    text = open(md).read() if os.path.exists(md) else ""
    section = "\n".join(lines)
    if "<!-- gpu:begin" in text and "<!-- gpu:end -->" in text:
        start = text.index("<!-- gpu:begin")
        end = text.index("<!-- gpu:end -->") + len("<!-- gpu:end -->")
        text = text[:start] + section + text[end:]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    with open(md, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
