#!/usr/bin/env bash
# Installs every Debian package ktf needs to build, test and benchmark.
# Idempotent: packages already present are skipped; runs apt-get only when something is missing.
#   KTF_SETUP_TESTS=1 ./scripts/setup.sh   also what the tests need (scripts/test.sh sets it)
#   KTF_SETUP_FUZZ=1 ./scripts/setup.sh    also clang and libFuzzer (scripts/fuzz.sh sets it)
#   KTF_TORCH=2 ./scripts/setup.sh   also installs PyTorch 2.11 from PyPI into a virtual environment
#                                    (${KTF_TORCH2_VENV:-~/.cache/ktf-torch2/venv}): the optional
#                                    second configuration, ktf built on the wheel's libtorch.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-openmp
  libboost-dev libboost-program-options-dev
  rapidjson-dev libgtest-dev libgmock-dev
  libprotobuf-dev protobuf-compiler zlib1g-dev
  libgloo-dev libpng-dev libjpeg62-turbo-dev
  dataset-fashion-mnist
)
if [[ "${KTF_SETUP_TESTS:-0}" == "1" || "${KTF_SETUP_BENCH:-0}" == "1" ]]; then
  # scripts/test.sh: the distributed tests use Debian's torchrun (python3-torch), the deployment
  # recipes' YAML (python3-yaml) and two network namespaces joined by a veth pair (iproute2); the
  # Hjson cross-check a virtual environment with PyPI's hjson (python3-venv, below); the
  # torchvision interop test loads exported ResNet and MobileNetV2 weights (python3-torchvision).
  PACKAGES+=(python3-torch python3-torchvision python3-yaml iproute2 python3-venv)
fi
if [[ "${KTF_SETUP_BENCH:-0}" == "1" ]]; then
  PACKAGES+=(python3-matplotlib time)
fi
if [[ "${KTF_SETUP_FUZZ:-0}" == "1" ]]; then
  # scripts/fuzz.sh: clang with libFuzzer and the sanitizer runtimes.
  PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "ktf setup: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "ktf setup: all packages present"
fi

if [[ "${KTF_SETUP_TESTS:-0}" == "1" ]]; then
  # The reference implementations the tests compare ktf with, from PyPI: the Hjson reader (hjson
  # 3.1.0, tests/core/hjson_test.cpp), TensorFlow with TensorBoard (tensorflow-cpu and
  # tensorboard 2.21.0) and TensorBoard's PyTorch profiler plugin (torch-tb-profiler 0.4.3), for
  # tests/crosscheck/. pip keeps the wheels in ~/.cache/pip.
  TVENV=${XDG_CACHE_HOME:-$HOME/.cache}/ktf-tests/venv
  if [[ -x "$TVENV/bin/python" ]] &&
     "$TVENV/bin/python" -c 'import hjson, tensorflow, tensorboard, torch_tb_profiler' 2>/dev/null; then
    echo "ktf setup: hjson, tensorflow-cpu, tensorboard and torch-tb-profiler present in $TVENV"
  else
    echo "ktf setup: installing hjson, tensorflow-cpu, tensorboard and torch-tb-profiler from PyPI into $TVENV"
    [[ -x "$TVENV/bin/python" ]] || python3 -m venv "$TVENV"
    "$TVENV/bin/pip" install -q --disable-pip-version-check hjson==3.1.0 tensorflow-cpu==2.21.0 \
      tensorboard==2.21.0 torch-tb-profiler==0.4.3
  fi
fi

if [[ "${KTF_TORCH:-1}" == "2" ]]; then
  # PyTorch 2.11 (the GPU machine's version, so one 2.x build serves both) from PyPI. pip keeps the
  # downloaded wheels in its cache (~/.cache/pip), so a second set-up downloads nothing.
  VENV=${KTF_TORCH2_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ktf-torch2/venv}
  PY=${KTF_TORCH2_PYTHON:-python3}
  if [[ -x "$VENV/bin/python" ]] &&
     "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.11.0")' 2>/dev/null; then
    echo "ktf setup: PyTorch 2.11.0 present in $VENV"
  else
    echo "ktf setup: installing PyTorch 2.11.0 from PyPI into $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.11.0 numpy
  fi
fi
