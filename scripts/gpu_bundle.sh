#!/usr/bin/env bash
# Packs the binaries built here for a GPU machine that lacks this project's build
# dependencies (the lent machines have CUDA and PyTorch but no Debian packages): copies
# build/speedrun, build/tests/speedrun_tests, the kernel drivers build/dev/cuda/dev_* and
# every shared library they need that is not part of the CUDA toolkit or the C runtime into
# gpu-bundle/ (ignored by git), ready to carry. There, `SPEEDRUN_PREBUILT=gpu-bundle
# scripts/cuda_check.sh` uses them instead of building. The binaries must already be built
# (cmake --build --preset default, and --target dev_cuda for the drivers). The bundle records
# the commit it was built from (COMMIT, printed by cuda_check.sh); the script fails when the
# bundle and the working tree together exceed the 64 MiB a device run may carry. Open MPI's
# runtime goes along (ompi/), so that the multi-rank checks can run where Open MPI is not
# installed.
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
# The binaries carry the commit of the last cmake configure (build_info.h), not of the build:
# say so when it is not HEAD, since the bench JSON records it.
built="$(build/speedrun --version 2>/dev/null | sed -n 's/.*(\([0-9a-f]*\)).*/\1/p')"
head="$(git rev-parse HEAD 2>/dev/null || true)"
if [ -n "$built" ] && [ "${head#"$built"}" = "$head" ]; then
  echo "gpu_bundle: warning: the binaries say commit $built, HEAD is ${head:0:12}: run \`cmake --preset default\`" \
    "and rebuild so that the bench JSON names the right commit (COMMIT in the bundle names HEAD)" >&2
fi
echo "$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')" \
  >"$out/COMMIT"
# Open MPI's runtime (mpirun, its components, help texts, PMIx), for the multi-rank checks
# on GPU machines without Open MPI: relocated under ompi/ (cuda_check.sh sets OPAL_PREFIX
# and the PMIx paths; checked here with the system's Open MPI directories hidden).
if command -v orterun >/dev/null && [ -d /usr/lib/x86_64-linux-gnu/openmpi ]; then
  ompi="$out/ompi"
  mkdir -p "$ompi/bin" "$ompi/lib/x86_64-linux-gnu" "$ompi/share" "$ompi/deps"
  cp "$(command -v orterun)" "$(command -v orted)" "$ompi/bin/" && ln -s orterun "$ompi/bin/mpirun"
  cp -a /usr/lib/x86_64-linux-gnu/openmpi "$ompi/lib/x86_64-linux-gnu/" && rm -rf "$ompi/lib/x86_64-linux-gnu/openmpi/include"
  [ -d /usr/lib/x86_64-linux-gnu/pmix2 ] && cp -a /usr/lib/x86_64-linux-gnu/pmix2 "$ompi/lib/x86_64-linux-gnu/"
  cp -a /usr/share/openmpi "$ompi/share/"
  find "$ompi/bin" "$ompi/lib" -type f \( -name '*.so*' -o -perm -u+x \) -print0 | xargs -0 ldd 2>/dev/null |
    awk '/=> \//{print $3}' | sort -u | grep -v -E '/cuda|lib(c|m|dl|rt|pthread|stdc\+\+|gcc_s|z|udev)\.so' |
    while read -r lib; do cp -nL "$lib" "$ompi/deps/"; done
else
  echo "gpu_bundle: no Open MPI runtime here; the multi-rank checks need mpirun on the GPU machine" >&2
fi
tar -C "$out" -cJf "$out.tar.xz" . && rm -rf "$out" && mkdir "$out" && mv "$out.tar.xz" "$out/"
echo "gpu_bundle: $(du -h "$out/gpu-bundle.tar.xz" | cut -f1) in $out/gpu-bundle.tar.xz"
# The device tool carries at most 64 MiB: the bundle plus the working tree that travels
# (tracked files and untracked ones git does not ignore).
bundle_bytes=$(stat -c %s "$out/gpu-bundle.tar.xz")
tree_bytes=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s 2>/dev/null |
  awk '{s += $1} END {print s + 0}')
total=$((bundle_bytes + tree_bytes))
echo "gpu_bundle: bundle $((bundle_bytes >> 20)) MiB + working tree $((tree_bytes >> 20)) MiB = $((total >> 20)) MiB" \
  "of the 64 MiB a device run may carry"
if [ "$total" -gt $((64 << 20)) ]; then
  echo "gpu_bundle: too large to carry (64 MiB at most)" >&2
  exit 1
fi
