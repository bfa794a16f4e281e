#!/usr/bin/env bash
# Benchmarks ktf against reference PyTorch scripts, alternating runs in one invocation, and writes
# docs/benchmarks.md and docs/benchmarks.png.
#   bench/run.sh [--reps N] [--threads N] [--skip-resnet] [--skip-target] [--torch2]
# --torch2 also sets up PyTorch 2.11 from PyPI, builds ktf on its libtorch (build-torch2/) and adds
# the table against PyTorch 2.11 eager, autocast and torch.compile.
set -euo pipefail
cd "$(dirname "$0")/.."
KTF_SETUP_BENCH=1 ./scripts/setup.sh
./scripts/build.sh
if [[ " $* " == *" --torch2 "* ]]; then
  KTF_TORCH=2 ./scripts/setup.sh
  KTF_TORCH=2 ./scripts/build.sh
fi
exec /usr/bin/python3 bench/bench.py "$@"
