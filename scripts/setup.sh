#!/usr/bin/env bash
# Installs every Debian package ktf needs to build, test and benchmark.
# Idempotent: packages already present are skipped; runs apt-get only when something is missing.
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
if [[ "${KTF_SETUP_BENCH:-0}" == "1" ]]; then
  PACKAGES+=(python3-torch python3-matplotlib time)
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
