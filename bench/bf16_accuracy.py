#!/usr/bin/python3
"""Test accuracy of a shipped config trained in fp32 and in bf16 (ktf --precision bf16).

Trains configs/fashion_mnist_cnn.json (10 epochs; its validation split is Fashion-MNIST's test
set) once per precision and seed, alternating, and prints the final validation accuracy of each
run and the bf16 - fp32 differences as one JSON line (also written to --out).

  bench/bf16_accuracy.py [--config configs/fashion_mnist_cnn.json] [--seeds 0,1] [--threads 2]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench import clean_env  # noqa: E402  (the environment the benchmark runs in)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "fashion_mnist_cnn.json"))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--host", default=os.path.join(ROOT, "build", "ktf-host"))
    p.add_argument("--plugins", default=os.path.join(ROOT, "build", "plugins"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks-bf16-accuracy.json"))
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="ktf-bf16-")
    env = clean_env(KTF_PLUGIN_PATH="")
    runs = []
    for i, seed in enumerate(int(s) for s in a.seeds.split(",")):
        order = ["fp32", "bf16"] if i % 2 == 0 else ["bf16", "fp32"]
        for precision in order:
            run_dir = os.path.join(work, f"{precision}-{seed}")
            print(f"bf16_accuracy: seed {seed} {precision}", file=sys.stderr, flush=True)
            subprocess.run([a.host, "--plugins", a.plugins, "-c", a.config, "--precision", precision,
                            "--seed", str(seed), "--threads", str(a.threads), "-q", "-o", run_dir],
                           env=env, check=True)
            epochs = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
            runs.append({"seed": seed, "precision": precision,
                         "val_accuracy": epochs[-1]["val_accuracy"],
                         "train_seconds": sum(e["train_seconds"] for e in epochs)})
    shutil.rmtree(work, ignore_errors=True)
    acc = {(r["seed"], r["precision"]): r["val_accuracy"] for r in runs}
    diffs = [acc[(s, "bf16")] - acc[(s, "fp32")] for s in sorted({r["seed"] for r in runs})]
    result = {"config": os.path.relpath(a.config, ROOT), "runs": runs,
              "bf16_minus_fp32_points": [round(100 * d, 2) for d in diffs],
              "mean_fp32": sum(r["val_accuracy"] for r in runs if r["precision"] == "fp32") / len(diffs),
              "mean_bf16": sum(r["val_accuracy"] for r in runs if r["precision"] == "bf16") / len(diffs)}
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
