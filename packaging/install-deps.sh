#!/usr/bin/env bash
# Installs every Debian 12 package MechScope needs to build, run, test and take screenshots.
# Idempotent: packages already present are skipped by apt. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # engine
  libtorch-dev libopenblas0-pthread libopenblas0-openmp libhdf5-dev libssl-dev nlohmann-json3-dev libcli11-dev
  # grid manifests in TOML
  libtomlplusplus-dev
  # text: tokenizer.json's regular expressions (Oniguruma, the engine of `tokenizers`) and Unicode normalization
  libonig-dev libicu-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev time
  # independent reference implementation used by the cross-check tests (Debian python, not pyenv)
  python3-torch python3-h5py python3-numpy
  # workbench (Qt 6 Widgets + QCustomPlot), screenshots
  qt6-base-dev qt6-svg-dev libqcustomplot-dev libqcustomplot2.1-qt6 xvfb xauth
  # packaging
  dpkg-dev fakeroot file desktop-file-utils appstream
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
