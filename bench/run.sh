#!/usr/bin/env bash
# Benchmarks ktf against reference PyTorch scripts, alternating runs in one invocation, and writes
# docs/benchmarks.md and docs/benchmarks.png.
#   bench/run.sh [--reps N] [--threads N] [--skip-resnet]
set -euo pipefail
cd "$(dirname "$0")/.."
KTF_SETUP_BENCH=1 ./scripts/setup.sh
./scripts/build.sh
exec /usr/bin/python3 bench/bench.py "$@"
