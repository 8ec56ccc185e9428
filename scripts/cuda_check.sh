#!/usr/bin/env bash
# First run of the CUDA backend on a GPU machine (docs/cuda.md, "What a GPU session must do
# first"): builds the default preset, then runs the CUDA op tests group by group (so that a
# crash in one group does not hide the others), the whole-model test, compute-sanitizer
# when present, and finally the unit suite. Logs go to ${OUT:-build/cuda-check}/.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-build/cuda-check}"
mkdir -p "$out"
jobs="$(nproc 2>/dev/null || echo 4)"

cmake --preset default >"$out/configure.log" 2>&1 && cmake --build --preset default -j "$jobs" >"$out/build.log" 2>&1 \
  || { echo "build failed: see $out/build.log"; tail -40 "$out/build.log"; exit 1; }
./build/speedrun info >"$out/info.log" 2>&1
nvidia-smi >"$out/nvidia-smi.log" 2>&1

tests=./build/tests/speedrun_tests
declare -a groups=(
  'CudaOpsTest.Relu2*:CudaOpsTest.RmsNorm*:CudaOpsTest.QkNorm*:CudaOpsTest.Rotary*'
  'CudaOpsTest.Embedding*'
  'CudaOpsTest.SoftcapCrossEntropy*'
  'CudaOpsTest.Linear*'
  'CudaOpsTest.Attention*:CudaOpsTest.Refuses*'
  'CudaModel.*'
)
status=0
for i in "${!groups[@]}"; do
  log="$out/group$i.log"
  timeout 600 "$tests" --gtest_filter="${groups[$i]}" >"$log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  printf '%-70s rc=%d  %s\n' "${groups[$i]}" "$rc" "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$log" | tr '\n' ' ')"
done
if command -v compute-sanitizer >/dev/null; then
  timeout 900 compute-sanitizer --tool memcheck "$tests" --gtest_filter='CudaOps*:CudaModel*' >"$out/memcheck.log" 2>&1
  echo "memcheck rc=$? ($(grep -c 'Invalid' "$out/memcheck.log") invalid accesses)"
  timeout 900 compute-sanitizer --tool racecheck "$tests" --gtest_filter='CudaOpsTest.Attention*:CudaOpsTest.RmsNorm*' \
    >"$out/racecheck.log" 2>&1
  echo "racecheck rc=$? ($(grep -c 'hazard' "$out/racecheck.log") hazard lines)"
fi
ctest --test-dir build -L unit -j "$jobs" >"$out/ctest.log" 2>&1
echo "ctest rc=$?: $(grep 'tests passed' "$out/ctest.log")"
exit $status
