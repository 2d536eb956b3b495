#!/usr/bin/env bash
# Installs everything dex needs to build and test, from Debian packages only.
# Usage: scripts/install-deps.sh [--dev]   (--dev adds python3-torch/scipy/skimage for regenerating fixtures)
set -euo pipefail
pkgs=(cmake g++ make ninja-build pkg-config zlib1g-dev libgtest-dev libgmock-dev libbenchmark-dev
      libnifti2-dev libniftiio-dev nlohmann-json3-dev libopenblas-dev libopenmpi-dev openmpi-bin
      libpng-dev libdeflate-dev)
if [[ "${1:-}" == "--dev" ]]; then pkgs+=(python3-torch python3-scipy python3-skimage python3-numpy clang libclang-rt-14-dev); fi
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "[install-deps] installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "[install-deps] all dependencies present"
