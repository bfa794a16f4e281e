#!/usr/bin/env bash
# Configures and builds ktf (Release, Ninja, ccache + precompiled headers) into ${KTF_BUILD_DIR:-build}.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${KTF_BUILD_DIR:-build}
JOBS=${KTF_JOBS:-$(nproc)}
# ccache must tolerate the precompiled header for its cache to hit. ktf keeps its own cache.
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros}
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ktf-ccache}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
