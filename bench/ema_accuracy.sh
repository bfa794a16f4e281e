#!/usr/bin/env bash
# Weight averaging against none (issue 16): trains configs/fashion_mnist_cnn.json three times with
# the same seed, plain, with "ema": {"decay": 0.999} and with "swa": {"start_epoch": 8}, scores each
# run's final weights with --evaluate on the 10 000 test images and prints a JSON line per run.
#   bench/ema_accuracy.sh [OUT_DIR] [extra ktf-host options, e.g. --set .../num_epochs=3]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/ema-accuracy}
shift || true
./scripts/setup.sh >/dev/null
./scripts/build.sh >/dev/null
loop=/0/train_loop/ktf.train.KerasTrainLoop
for variant in plain ema swa; do
  case $variant in
    plain) extra=() ;;
    ema) extra=(--set "$loop/ema={\"decay\": 0.999}") ;;
    swa) extra=(--set "$loop/swa={\"start_epoch\": 8}") ;;
  esac
  rm -rf "$out/$variant"
  start=$(date +%s)
  build/ktf-host --plugins build/plugins -c configs/fashion_mnist_cnn.json -q --seed 1 \
    -o "$out/$variant" "${extra[@]}" "$@"
  seconds=$(( $(date +%s) - start ))
  build/ktf-host --plugins build/plugins -q --evaluate "$out/$variant"
  python3 -c "import json,sys; e=json.load(open('$out/$variant/evaluation-cycle-1.json')); \
print(json.dumps({'variant': '$variant', 'test_accuracy': e['accuracy'], 'test_loss': e['loss'], \
'train_and_validate_seconds': $seconds}))"
done
