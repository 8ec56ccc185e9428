#!/usr/bin/env bash
# First run of the CUDA backend on a GPU machine (docs/cuda.md, "What a GPU session must do
# first"): builds the default preset, then runs the CUDA op tests group by group (so that a
# crash in one group does not hide the others), the whole-model tests (f32 and bf16), the
# optimizer tests, the unit suite, the norm and model tests again with the one-pass RMSNorm
# kernels (SPEEDRUN_RMSNORM=fast), the kernel drivers (dev/cuda: build/dev/cuda/dev_*, e.g.
# dev_rmsnorm's and dev_attention_flash's checks against fp64 references and their timing tables), the optimizer
# benchmark on the three Track 3 configs, the GPU side-by-side (speedrun bench on Track 3 with --device cuda, the same model in PyTorch:
# scripts/bench_torch_gpu.py, eager and compiled, and their ratio: scripts/gpu_ratio.py),
# short training runs on CUDA, and compute-sanitizer when present. Logs and JSON figures go
# to ${OUT:-build/cuda-check}/. SKIP_TESTS=1 runs only the build and the benches;
# SPEEDRUN_PREBUILT=DIR uses binaries packed by scripts/gpu_bundle.sh instead of building
# (for GPU machines without the Debian build dependencies); GROUP_TIMEOUT (seconds, 600)
# bounds each test group; NO_SANITIZER=1 and NO_TORCH_COMPILE=1 skip the slow parts.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-build/cuda-check}"
mkdir -p "$out"
jobs="$(nproc 2>/dev/null || echo 4)"

speedrun=./build/speedrun
tests=./build/tests/speedrun_tests
devdir=./build/dev/cuda
if [ -n "${SPEEDRUN_PREBUILT:-}" ]; then
  # Binaries packed by scripts/gpu_bundle.sh on a machine that has the build dependencies.
  bundle="$(mktemp -d)"
  tar -C "$bundle" -xJf "$SPEEDRUN_PREBUILT/gpu-bundle.tar.xz" || { echo "cannot unpack $SPEEDRUN_PREBUILT"; exit 1; }
  export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  speedrun="$bundle/speedrun"
  tests="$bundle/speedrun_tests"
  devdir="$bundle"
  # The CTest suite needs the build tree: only the GPU groups and the benches run.
  NO_CTEST=1
else
  cmake --preset default >"$out/configure.log" 2>&1 && cmake --build --preset default -j "$jobs" >"$out/build.log" 2>&1 \
    && cmake --build --preset default -j "$jobs" --target dev_cuda >>"$out/build.log" 2>&1 \
    || { echo "build failed: see $out/build.log"; tail -40 "$out/build.log"; exit 1; }
fi
"$speedrun" info >"$out/info.log" 2>&1
echo "speedrun info rc=$?: $(grep -i -m2 -E 'device|cuda' "$out/info.log" | tr '\n' ' ')"
nvidia-smi >"$out/nvidia-smi.log" 2>&1
group_timeout="${GROUP_TIMEOUT:-600}"

# Test names, not files: the CudaOpsTest cases live in tests/unit/ops/test_<op>.cpp (one
# file per op), CudaModel in test_cuda_model.cpp, CudaOptimTest in test_cuda_optim.cpp.
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
  timeout "$group_timeout" "$tests" --gtest_filter="${groups[$i]}" >"$log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  printf '%-70s rc=%d  %s\n' "${groups[$i]}" "$rc" "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$log" | tr '\n' ' ')"
done
# The one-pass RMSNorm kernels are opt-in until they have passed here: the norm tests and the
# whole-model tests again with them selected.
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  log="$out/group-rmsnorm-fast.log"
  SPEEDRUN_RMSNORM=fast timeout "$group_timeout" "$tests" --gtest_filter='CudaOpsTest.RmsNorm*:CudaOpsTest.QkNorm*:CudaModel.*' \
    >"$log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  printf '%-70s rc=%d  %s\n' "SPEEDRUN_RMSNORM=fast RmsNorm*:QkNorm*:CudaModel.*" "$rc" \
    "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$log" | tr '\n' ' ')"
fi
# The kernel drivers (dev/cuda/*.cu): each validates against a CPU reference (non-zero exit on
# a mismatch) and prints its timing table; the whole output is in $out/dev_NAME.log.
for name in attention_flash rmsnorm; do
  driver="$devdir/dev_$name"
  if [ ! -x "$driver" ]; then
    echo "dev_$name: not built (cmake --build --preset default --target dev_cuda; scripts/gpu_bundle.sh carries it)"
    status=1
    continue
  fi
  timeout "${BENCH_TIMEOUT:-600}" "$driver" >"$out/dev_$name.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  echo "dev_$name rc=$rc"
  grep -E '^(dev_|validation|checks|device-to-device|op |forward|backward|QK|target)' "$out/dev_$name.log"
done
if [ "${SKIP_TESTS:-0}" != 1 ] && [ "${NO_CTEST:-0}" != 1 ]; then
  ctest --test-dir build -L unit -j "$jobs" >"$out/ctest.log" 2>&1
  echo "ctest rc=$?: $(grep 'tests passed' "$out/ctest.log")"
fi

# The optimizer benchmark (step times, the Newton-Schulz GEMMs' TFLOP/s against the bf16
# GEMM ceiling, Newton-Muon's amortized refresh) on the Track 3 shapes.
for c in track3-muon track3-newton-muon track3-rmnp; do
  timeout "${BENCH_TIMEOUT:-600}" "$speedrun" bench "configs/$c.json" --optimizers-only --device cuda --steps 10 --warmup 3 \
    --json "$out/bench-optim-$c.json" >"$out/bench-optim-$c.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  printf 'bench --optimizers-only %-22s rc=%d\n' "$c" "$rc"
  cat "$out/bench-optim-$c.log"
done

# The side-by-side (docs/performance.md, "GPU"): one micro-batch of 64 x 1024 tokens each.
timeout "${BENCH_TIMEOUT:-600}" "$speedrun" bench configs/track3-muon.json --device cuda --steps 10 --warmup 3 \
  --json "$out/bench_speedrun.json" >"$out/bench_speedrun.log" 2>&1
echo "speedrun bench rc=$?: $(grep -E 'forward\+backward|MFU|GEMM ceiling' "$out/bench_speedrun.log" | tr '\n' ' ')"
SPEEDRUN_RMSNORM=fast timeout "${BENCH_TIMEOUT:-600}" "$speedrun" bench configs/track3-muon.json --device cuda --steps 10 \
  --warmup 3 --json "$out/bench_speedrun_rmsnorm_fast.json" >"$out/bench_speedrun_rmsnorm_fast.log" 2>&1
echo "speedrun bench, SPEEDRUN_RMSNORM=fast rc=$?: $(grep -E 'forward\+backward|MFU' "$out/bench_speedrun_rmsnorm_fast.log" | tr '\n' ' ')"
py="${PYTHON:-python3}"
timeout "${BENCH_TIMEOUT:-600}" "$py" scripts/bench_torch_gpu.py --steps 10 --warmup 3 --json "$out/bench_torch.json" \
  >"$out/bench_torch.log" 2>&1
echo "torch eager rc=$?: $(grep forward "$out/bench_torch.log")"
[ "${NO_TORCH_COMPILE:-0}" = 1 ] || timeout "${BENCH_TIMEOUT:-900}" "$py" scripts/bench_torch_gpu.py --compile --steps 10 --warmup 5 --json "$out/bench_torch_compiled.json" \
  >"$out/bench_torch_compiled.log" 2>&1
echo "torch compiled rc=$?: $(grep forward "$out/bench_torch_compiled.log")"
for theirs in bench_torch bench_torch_compiled; do
  [ -f "$out/bench_speedrun.json" ] && [ -f "$out/$theirs.json" ] &&
    "$py" scripts/gpu_ratio.py "$out/bench_speedrun.json" "$out/$theirs.json" --json "$out/ratio_$theirs.json"
done
# Training on CUDA: the quickstart (its CPU figures are in the README) with f32 and bf16
# activations, and the three Track 3 configs for 20 steps on the embedded data (refreshes of
# Newton-Muon every 5 steps, so that they happen inside the run).
runs="$(mktemp -d)"
train_run() {  # name, config, extra --set arguments...
  local name="$1" config="$2"
  shift 2
  timeout "${BENCH_TIMEOUT:-600}" "$speedrun" train "$config" --device cuda --out-dir "$runs" --run-name "$name" \
    --no-progress "$@" >"$out/train-$name.log" 2>&1
  local rc=$?
  [ $rc -ne 0 ] && status=1
  printf 'train %-24s rc=%d  %s\n' "$name" "$rc" "$(grep -E 'val_loss' "$out/train-$name.log" | sed -n '1p;$p' | tr '\n' ' ')"
  [ -f "$runs/$name/metrics.jsonl" ] && cp "$runs/$name/metrics.jsonl" "$out/metrics-$name.jsonl"
}
if [ "${NO_TRAIN:-0}" != 1 ]; then
  for act in f32 bf16; do train_run "quickstart-$act" configs/quickstart.json --set train.activation_dtype=$act; done
  sotu=(--set 'data.train_glob=data/sotu/sotu_train_*.bin' --set 'data.val_glob=data/sotu/sotu_val_*.bin'
        --set data.val_tokens=131072 --set train.batch_tokens=131072 --set train.steps=20 --set train.val_every=10
        --set data.epochs=2)
  train_run track3-muon configs/track3-muon.json "${sotu[@]}"
  train_run track3-rmnp configs/track3-rmnp.json "${sotu[@]}"
  nm=()
  for i in 3 4 5 6; do nm+=(--set "optimizers[$i].refresh_every=5"); done
  train_run track3-newton-muon configs/track3-newton-muon.json "${sotu[@]}" "${nm[@]}"
fi

# Last, being the slowest: compute-sanitizer over the CUDA tests.
if [ "${SKIP_TESTS:-0}" != 1 ] && [ "${NO_SANITIZER:-0}" != 1 ] && command -v compute-sanitizer >/dev/null; then
  timeout "${SANITIZER_TIMEOUT:-900}" compute-sanitizer --tool memcheck "$tests" --gtest_filter='CudaOps*:CudaModel*:CudaOptim*' >"$out/memcheck.log" 2>&1
  echo "memcheck rc=$? ($(grep -c 'Invalid' "$out/memcheck.log") invalid accesses)"
  timeout "${SANITIZER_TIMEOUT:-900}" compute-sanitizer --tool racecheck "$tests" --gtest_filter='CudaOpsTest.Attention*:CudaOpsTest.RmsNorm*' \
    >"$out/racecheck.log" 2>&1
  echo "racecheck rc=$? ($(grep -c 'hazard' "$out/racecheck.log") hazard lines)"
  for tool in memcheck racecheck; do
    SPEEDRUN_RMSNORM=fast timeout "${SANITIZER_TIMEOUT:-900}" compute-sanitizer --tool $tool "$tests" \
      --gtest_filter='CudaOpsTest.RmsNorm*:CudaOpsTest.QkNorm*' >"$out/$tool-rmsnorm-fast.log" 2>&1
    echo "$tool, SPEEDRUN_RMSNORM=fast rc=$? ($(grep -c -E 'Invalid|hazard' "$out/$tool-rmsnorm-fast.log") error lines)"
  done
fi
exit $status
