#!/usr/bin/env bash
# Quick start, test suite: installs what is missing, builds, and runs every test with ctest
# (unit tests, plugin conformance, loader fixtures, functional training, install round trip).
#   sudo ./scripts/test.sh [ctest options...]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
cd build
exec ctest --output-on-failure --timeout 1500 "$@"
