#!/usr/bin/env bash
# Quick start, main job: installs what is missing, builds, and trains the default example config
# (Fashion-MNIST CNN). Extra arguments go to ktf-host, e.g. --set or --output-dir.
#   sudo ./scripts/run.sh [configs/<config>.json] [ktf-host options...]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
CONFIG=configs/fashion_mnist_cnn.json
if [[ $# -gt 0 && "$1" != -* ]]; then CONFIG=$1; shift; fi
exec ./build/ktf-host --plugins build/plugins -c "$CONFIG" "$@"
