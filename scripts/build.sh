#!/usr/bin/env bash
# Configures and builds ktf (Release, Ninja, ccache + precompiled headers) into ${KTF_BUILD_DIR:-build}.
#   KTF_TORCH=2 ./scripts/build.sh   builds against PyTorch 2.11's libtorch from the virtual
#                                    environment scripts/setup.sh made, into build-torch2/.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA=()
if [[ "${KTF_TORCH:-1}" == "2" ]]; then
  BUILD_DIR=${KTF_BUILD_DIR:-build-torch2}
  VENV=${KTF_TORCH2_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ktf-torch2/venv}
  TP=$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  # Explicit Torch_DIR/Caffe2_DIR: a build directory configured for Debian's libtorch before keeps
  # those in its cache, which CMAKE_PREFIX_PATH would not replace.
  EXTRA=(-DCMAKE_PREFIX_PATH="$TP" -DTorch_DIR="$TP/Torch" -DCaffe2_DIR="$TP/Caffe2")
else
  BUILD_DIR=${KTF_BUILD_DIR:-build}
fi
JOBS=${KTF_JOBS:-$(nproc)}
# ccache must tolerate the precompiled header for its cache to hit. ktf keeps its own cache.
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros}
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ktf-ccache}
# Paths inside the checkout are hashed relative to it, so a second clone (CI's clean one) hits the
# cache the first filled instead of compiling everything again.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "${EXTRA[@]}" "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
