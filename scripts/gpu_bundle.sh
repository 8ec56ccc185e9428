#!/usr/bin/env bash
# Packs the binaries built here for a GPU machine that lacks this project's build
# dependencies (the lent machines have CUDA and PyTorch but no Debian packages): copies
# build/speedrun, build/tests/speedrun_tests, the kernel drivers build/dev/cuda/dev_* and
# every shared library they need that is not part of the CUDA toolkit or the C runtime into
# gpu-bundle/ (ignored by git), ready to carry. There, `SPEEDRUN_PREBUILT=gpu-bundle
# scripts/cuda_check.sh` uses them instead of building. The binaries must already be built
# (cmake --build --preset default, and --target dev_cuda for the drivers).
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-bundle
rm -rf "$out" && mkdir -p "$out/lib"
for bin in build/speedrun build/tests/speedrun_tests; do
  [ -x "$bin" ] || { echo "gpu_bundle: $bin is not built (cmake --build --preset default)" >&2; exit 1; }
  cp "$bin" "$out/"
done
drivers=(build/dev/cuda/dev_*)
if [ -x "${drivers[0]}" ]; then
  cp "${drivers[@]}" "$out/"
else
  drivers=()
  echo "gpu_bundle: no kernel drivers in build/dev/cuda (cmake --build --preset default --target dev_cuda);" \
    "cuda_check.sh will report them missing" >&2
fi
# Libraries from the system (OpenBLAS, spdlog, fmt, Open MPI and their needs); the CUDA
# libraries and the C/C++ runtime come from the GPU machine itself.
ldd build/speedrun build/tests/speedrun_tests "${drivers[@]}" | awk '/=> \//{print $3}' | sort -u |
  grep -v -E '/cuda|lib(c|m|dl|rt|pthread|stdc\+\+|gcc_s|z|udev)\.so' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done
tar -C "$out" -cJf "$out.tar.xz" . && rm -rf "$out" && mkdir "$out" && mv "$out.tar.xz" "$out/"
echo "gpu_bundle: $(du -h "$out/gpu-bundle.tar.xz" | cut -f1) in $out/gpu-bundle.tar.xz"
