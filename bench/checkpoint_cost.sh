#!/usr/bin/env bash
# What a checkpoint costs (docs/reliability.md): trains a few steps of the CNN and ResNet-18
# configs with a checkpoint every 5 steps and prints, per config, the checkpoint size, its write
# time (state file, manifest, syncs; from log.txt), the time of one training step in the same run,
# and a write's cost in training steps (the default checkpoints once per epoch: 938 steps of these
# Fashion-MNIST configs).
#   bench/checkpoint_cost.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
lscpu | grep -m1 "Model name" || true
printf '%-24s %8s %9s %8s %15s\n' config "size MB" "write s" "step s" "write in steps"
for cfg in fashion_mnist_cnn fashion_mnist_resnet; do
  loop=/0/train_loop/ktf.train.KerasTrainLoop
  "$BUILD/ktf-host" --plugins "$BUILD/plugins" -c "configs/$cfg.json" -q -o "$OUT/$cfg" \
    --set $loop/steps_per_epoch=20 --set $loop/num_epochs=1 --set $loop/num_valid_steps=1 \
    --set $loop/verbose=0 --set /0/checkpoint/every_steps=5 >/dev/null
  # Step checkpoints 2-4 (the first includes warm-up); training time from metrics.jsonl.
  python3 - "$OUT/$cfg" "$cfg" <<'PY'
import json, re, sys
run, name = sys.argv[1], sys.argv[2]
lines = [l for l in open(run + "/log.txt") if re.match(r"checkpoint ckpt-\d+ \(every 5 steps\)", l)]
stats = [re.search(r", ([0-9.]+) MB in ([0-9.]+) s", l).groups() for l in lines[1:4]]
size = float(stats[0][0])
write = sum(float(s) for _, s in stats) / len(stats)
epoch = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"phase": "epoch"' in l][0]
step = (epoch["train_seconds"] - write * len(lines)) / epoch["train_steps"]
print(f"{name:24} {size:8.1f} {write:9.3f} {step:8.4f} {write / step:15.1f}")
PY
done
