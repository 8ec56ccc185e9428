#!/usr/bin/env bash
# Installs speedrun's build and test dependencies from Debian 12 packages.
# Safe to run any number of times: it only calls apt-get when something is missing.
set -euo pipefail

packages=(
  build-essential cmake git pkg-config
  libcli11-dev libspdlog-dev nlohmann-json3-dev
  libopenblas-openmp-dev libopenmpi-dev openmpi-bin
  libgtest-dev
  python3 python3-numpy python3-torch python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
