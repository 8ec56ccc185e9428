#!/usr/bin/env bash
# Packs the binaries built here for a GPU machine that lacks this project's build
# dependencies (the lent machines have CUDA and PyTorch but no Debian packages): copies
# build/speedrun, build/tests/speedrun_tests, the kernel driver build/dev/cuda/dev_attention_flash
# and every shared library they need that is not part of the CUDA toolkit or the C runtime
# into gpu-bundle/ (ignored by git), ready to
# carry. There, `SPEEDRUN_PREBUILT=gpu-bundle scripts/cuda_check.sh` uses them instead of
# building. The binaries must already be built (cmake --build --preset default).
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-bundle
rm -rf "$out" && mkdir -p "$out/lib"
bins="build/speedrun build/tests/speedrun_tests build/dev/cuda/dev_attention_flash"
for bin in $bins; do
  [ -x "$bin" ] || { echo "gpu_bundle: $bin is not built (cmake --build --preset default)" >&2; exit 1; }
  cp "$bin" "$out/"
done
# Libraries from the system (OpenBLAS, spdlog, fmt, Open MPI and their needs); the CUDA
# libraries and the C/C++ runtime come from the GPU machine itself.
ldd $bins | awk '/=> \//{print $3}' | sort -u |
  grep -v -E '/cuda|lib(c|m|dl|rt|pthread|stdc\+\+|gcc_s|z|udev)\.so' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done
tar -C "$out" -cJf "$out.tar.xz" . && rm -rf "$out" && mkdir "$out" && mv "$out.tar.xz" "$out/"
echo "gpu_bundle: $(du -h "$out/gpu-bundle.tar.xz" | cut -f1) in $out/gpu-bundle.tar.xz"
