#!/usr/bin/env bash
# First run of the CUDA backend on a GPU machine (docs/cuda.md, "What a GPU session must do
# first"): builds the default preset, then runs the CUDA op tests group by group (so that a
# crash in one group does not hide the others), the whole-model tests (f32 and bf16), the
# optimizer tests, compute-sanitizer when present, the unit suite, the optimizer benchmark
# on the three Track 3 configs, and then the GPU side-by-side: speedrun bench on Track 3 with
# --device cuda, the same model in PyTorch (scripts/bench_torch_gpu.py, eager and compiled),
# and their ratio (scripts/gpu_ratio.py). Logs and JSON figures go to
# ${OUT:-build/cuda-check}/. SKIP_TESTS=1 runs only the build and the benches.
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
  'CudaOpsTest.Relu2*:CudaOpsTest.RmsNorm*:CudaOpsTest.QkNorm*:CudaOpsTest.Rotary*:CudaOpsTest.Convert*'
  'CudaOpsTest.Embedding*'
  'CudaOpsTest.SoftcapCrossEntropy*'
  'CudaOpsTest.Linear*'
  'CudaOpsTest.Attention*:CudaOpsTest.Refuses*'
  'CudaModel.*'
  'CudaOptimTest.AdamW*:CudaOptimTest.Rmnp*'
  'CudaOptimTest.Muon*'
  'CudaOptimTest.NewtonMuon*'
)
status=0
[ "${SKIP_TESTS:-0}" = 1 ] && groups=()
for i in "${!groups[@]}"; do
  log="$out/group$i.log"
  timeout 600 "$tests" --gtest_filter="${groups[$i]}" >"$log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  printf '%-70s rc=%d  %s\n' "${groups[$i]}" "$rc" "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$log" | tr '\n' ' ')"
done
if [ "${SKIP_TESTS:-0}" != 1 ] && command -v compute-sanitizer >/dev/null; then
  timeout 900 compute-sanitizer --tool memcheck "$tests" --gtest_filter='CudaOps*:CudaModel*:CudaOptim*' >"$out/memcheck.log" 2>&1
  echo "memcheck rc=$? ($(grep -c 'Invalid' "$out/memcheck.log") invalid accesses)"
  timeout 900 compute-sanitizer --tool racecheck "$tests" --gtest_filter='CudaOpsTest.Attention*:CudaOpsTest.RmsNorm*' \
    >"$out/racecheck.log" 2>&1
  echo "racecheck rc=$? ($(grep -c 'hazard' "$out/racecheck.log") hazard lines)"
fi
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  ctest --test-dir build -L unit -j "$jobs" >"$out/ctest.log" 2>&1
  echo "ctest rc=$?: $(grep 'tests passed' "$out/ctest.log")"
fi

# The optimizer benchmark (step times, the Newton-Schulz GEMMs' TFLOP/s against the bf16
# GEMM ceiling, Newton-Muon's amortized refresh) on the Track 3 shapes.
for c in track3-muon track3-newton-muon track3-rmnp; do
  timeout 600 ./build/speedrun bench "configs/$c.json" --optimizers-only --device cuda --steps 10 --warmup 3 \
    --json "$out/bench-optim-$c.json" >"$out/bench-optim-$c.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  printf 'bench --optimizers-only %-22s rc=%d\n' "$c" "$rc"
  cat "$out/bench-optim-$c.log"
done

# The side-by-side (docs/performance.md, "GPU"): one micro-batch of 64 x 1024 tokens each.
timeout 600 ./build/speedrun bench configs/track3-muon.json --device cuda --steps 10 --warmup 3 \
  --json "$out/bench_speedrun.json" >"$out/bench_speedrun.log" 2>&1
echo "speedrun bench rc=$?: $(grep -E 'forward\+backward|MFU|GEMM ceiling' "$out/bench_speedrun.log" | tr '\n' ' ')"
py="${PYTHON:-python3}"
timeout 600 "$py" scripts/bench_torch_gpu.py --steps 10 --warmup 3 --json "$out/bench_torch.json" \
  >"$out/bench_torch.log" 2>&1
echo "torch eager rc=$?: $(grep forward "$out/bench_torch.log")"
timeout 900 "$py" scripts/bench_torch_gpu.py --compile --steps 10 --warmup 5 --json "$out/bench_torch_compiled.json" \
  >"$out/bench_torch_compiled.log" 2>&1
echo "torch compiled rc=$?: $(grep forward "$out/bench_torch_compiled.log")"
for theirs in bench_torch bench_torch_compiled; do
  [ -f "$out/bench_speedrun.json" ] && [ -f "$out/$theirs.json" ] &&
    "$py" scripts/gpu_ratio.py "$out/bench_speedrun.json" "$out/$theirs.json" --json "$out/ratio_$theirs.json"
done
exit $status
