#!/usr/bin/env bash
# Quick start, test suite: installs what is missing, builds, and runs every test with ctest
# (unit tests, plugin conformance, loader fixtures, functional training, install round trip).
#   sudo ./scripts/test.sh [ctest options...]
#   KTF_TORCH=2 ./scripts/test.sh     the same against PyTorch 2.11's libtorch (build-torch2/)
set -euo pipefail
cd "$(dirname "$0")/.."
KTF_SETUP_TESTS=1 ./scripts/setup.sh
./scripts/build.sh
if [[ "${KTF_TORCH:-1}" == "2" ]]; then cd "${KTF_BUILD_DIR:-build-torch2}"; else cd "${KTF_BUILD_DIR:-build}"; fi
# Two tests run side by side (KTF_TEST_JOBS); those that train take both slots (tests/CMakeLists.txt),
# so two of them never share the 2-core machine's cores.
exec ctest --output-on-failure --timeout 1500 -j "${KTF_TEST_JOBS:-2}" "$@"
