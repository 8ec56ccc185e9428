#!/usr/bin/env bash
# Installs speedrun's build and test dependencies: Debian 12 packages, then the npm test
# tools pinned in tests/js/package-lock.json (tiktoken, the reference of
# tests/python/test_tokenizer_tiktoken.py) into tests/js/node_modules (git-ignored).
# Safe to run any number of times: it only calls apt-get or npm when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake git pkg-config
  libcli11-dev libspdlog-dev nlohmann-json3-dev
  libopenblas-openmp-dev libopenmpi-dev openmpi-bin
  libgtest-dev zlib1g-dev
  python3 python3-numpy python3-torch python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm: Debian's nodejs and npm packages unless a node with npm is there already
# (e.g. NodeSource's nodejs package, which bundles npm and conflicts with Debian's npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages and node/npm already installed"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm test tools, exactly the versions of tests/js/package-lock.json (`npm ls` fails when
# something is missing or differs; `npm ci` installs the lock file as written).
if npm ls --prefix tests/js --depth=0 >/dev/null 2>&1; then
  echo "setup: npm test tools already installed (tests/js/node_modules)"
else
  echo "setup: installing npm test tools into tests/js/node_modules"
  npm ci --prefix tests/js --no-audit --no-fund || {
    echo "setup: npm ci in tests/js failed (it needs the npm registry: registry.npmjs.org)" >&2
    exit 1
  }
fi
echo "setup: done"
