#!/usr/bin/env bash
# Everything a GPU session checks and measures, in one run (docs/cuda.md, "What a GPU session
# runs"; about 8 minutes on an H200 by estimate, each section's seconds are printed):
#   1. binaries: the build (cmake, default preset, + the dev/cuda drivers), or the bundle packed
#      by scripts/gpu_bundle.sh (SPEEDRUN_PREBUILT=DIR, for machines without the Debian build
#      dependencies, such as the lent ones);
#   2. every CUDA test, group by group (a crash in one does not hide the others), then again with
#      the opt-in kernels: SPEEDRUN_ATTENTION=flash (attention tests + the whole model),
#      SPEEDRUN_RMSNORM=fast (norm tests + the whole model) and SPEEDRUN_GEMM_EPILOGUE=fused
#      (linear tests + the whole model);
#   3. the kernel drivers dev/cuda/dev_* (checks against fp64 references, timing tables);
#   4. compute-sanitizer memcheck and racecheck on the new kernels (flash attention, one-pass
#      RMSNorm, the fused GEMM epilogues; --sanitize-all: memcheck over every CUDA test too);
#   5. `speedrun bench --kernels` (the per-op table) with the default kernels and with
#      every opt-in (flash + fast + fused epilogues), `speedrun bench --device cuda` (one
#      micro-batch, whole steps) likewise,
#      and the optimizer benchmark on the Track 3 configs;
#   6. the PyTorch side-by-side: scripts/bench_torch_gpu.py (torch.compile; its SDPA backend,
#      peak memory, whole steps) and scripts/gpu_ratio.py;
#   7. short training runs on CUDA (the quickstart in f32 and bf16), then several ranks on the
#      one GPU (scripts/cuda_mpi_check.sh: mpirun -np 1 with NCCL vs one process, 2 ranks per
#      GPU with every optimizer, a killed rank);
#   8. with --compare: scripts/gpu_compare.sh (the gpu-mini LR sweep and optimizer comparison).
# Output: ${OUT:-build/cuda-check}. The device tool brings back at most 8 files from $OUT, so
# when OUT is set the logs are written to a scratch folder and packed into
# $OUT/cuda-check.tar.gz at the end; $OUT also gets summary.txt (every line printed here), the
# main JSON results and the gpu-mini comparison table: at most 8 files. Without OUT everything
# stays in build/cuda-check/.
#
#   scripts/cuda_check.sh [--dry-run] [--compare | --compare-only] [--sanitize-all] [--no-tests]
#                         [--no-sanitizer] [--no-bench] [--no-torch] [--no-train] [--no-mpi]
# (--no-* skip sections 2-3, 4, 5, 6, 7, 7's multi-rank cases: to split the work over device calls, each within the
# tool's 10-minute limit per command; --compare-only: the binaries and section 8 alone, which
# by estimate takes about 6 minutes: a call of its own.)
#
# --dry-run runs nothing on a GPU: it checks the bundle (unpacks it, lists missing libraries)
# or the build tree and prints every command with its time limit (tests/python/
# test_gpu_scripts.py runs it on the CPU). Environment: SPEEDRUN_PREBUILT=DIR (the bundle),
# BUILD_DIR (the build tree whose binaries to use without a bundle: build),
# GROUP_TIMEOUT (s, per test group, 240), BENCH_TIMEOUT (s, per bench, 300), SANITIZER_TIMEOUT
# (s, 300), PYTHON (python3). Exit status 1 when any step failed.
set -u
cd "$(dirname "$0")/.."
dry=0 compare=0 sanitize_all=0 torch=1 train=1 tests_on=1 sanitizer=1 bench=1 mpi=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    --compare) compare=1 ;;
    --sanitize-all) sanitize_all=1 ;;
    --no-torch) torch=0 ;;
    --no-train) train=0 ;;
    --no-mpi) mpi=0 ;;
    --no-tests) tests_on=0 ;;
    --no-sanitizer) sanitizer=0 ;;
    --no-bench) bench=0 ;;
    --compare-only) compare=1 tests_on=0 sanitizer=0 bench=0 torch=0 train=0 mpi=0 ;;
    -h|--help) sed -n '2,/^[^#]/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "cuda_check.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
final="${OUT:-build/cuda-check}"
mkdir -p "$final" || exit 1
if [ -n "${OUT:-}" ]; then work="$(mktemp -d /tmp/cuda-check.XXXXXX)"; else work="$final"; fi
# Every line printed here also goes to $final/summary.txt (tee's pid kept, to wait for it at the end).
exec > >(tee "$final/summary.txt") 2>&1
tee_pid=$!
jobs="$(nproc 2>/dev/null || echo 4)"
group_timeout="${GROUP_TIMEOUT:-240}"
bench_timeout="${BENCH_TIMEOUT:-300}"
san_timeout="${SANITIZER_TIMEOUT:-300}"
py="${PYTHON:-python3}"
status=0
t_start=$SECONDS
echo "cuda_check.sh $* at $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), logs in $work"

# step NAME LIMIT CMD...: runs CMD (env assignments allowed: `env A=B cmd`) under `timeout LIMIT`,
# its output in $work/NAME.log; prints one line: rc, seconds, and gtest's PASSED/FAILED counts.
step() {
  local name="$1" limit="$2"
  shift 2
  if [ "$dry" = 1 ]; then
    printf 'would run %-32s (%4ss): %s\n' "$name" "$limit" "$*"
    return 0
  fi
  local t0=$SECONDS
  timeout "$limit" "$@" >"$work/$name.log" 2>&1
  local rc=$?
  [ $rc -ne 0 ] && status=1
  printf '%-34s rc=%-3d %4ds  %s\n' "$name" "$rc" "$((SECONDS - t0))" \
    "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) |ERROR SUMMARY|RACECHECK SUMMARY' "$work/$name.log" | tr '\n' ' ')"
  return $rc
}
section() { echo; echo "== $* ($((SECONDS - t_start)) s so far)"; }
# finish STATUS: what comes back from the device tool (at most 8 files): summary.txt, the main
# JSON results, and everything else packed into one archive; then waits for tee and exits.
finish() {
  section "done: status $1"
  if [ "$work" != "$final" ]; then
    for f in bench_kernels.json bench_kernels_flash_fast.json bench_speedrun.json bench_torch_compiled.json \
             ratio_bench_speedrun.json; do
      [ -f "$work/$f" ] && cp "$work/$f" "$final/"
    done
    [ -f "$work/gpu-compare/compare/comparison.md" ] && cp "$work/gpu-compare/compare/comparison.md" \
      "$final/gpu_mini_comparison.md"
    tar -C "$work" -czf "$final/cuda-check.tar.gz" . 2>/dev/null && rm -rf "$work" \
      || echo "could not pack $work into $final/cuda-check.tar.gz (the logs stay there)"
  fi
  exec >&- 2>&-
  wait "$tee_pid" 2>/dev/null
  exit "$1"
}

# ---- 1. binaries ---------------------------------------------------------------------------
section "binaries"
build="${BUILD_DIR:-build}"  # the default preset's binary dir
speedrun="$build/speedrun"
tests="$build/tests/speedrun_tests"
devdir="$build/dev/cuda"
if [ -n "${SPEEDRUN_PREBUILT:-}" ]; then
  bundle="$(mktemp -d /tmp/speedrun-bundle.XXXXXX)"
  tar -C "$bundle" -xJf "$SPEEDRUN_PREBUILT/gpu-bundle.tar.xz" || { echo "cannot unpack $SPEEDRUN_PREBUILT/gpu-bundle.tar.xz"; finish 1; }
  export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  speedrun="$bundle/speedrun"
  tests="$bundle/speedrun_tests"
  devdir="$bundle"
  if [ -x "$bundle/ompi/bin/mpirun" ] && ! command -v mpirun >/dev/null; then
    # The bundle's relocated Open MPI runtime (scripts/gpu_bundle.sh), for section 7's ranks.
    export PATH="$bundle/ompi/bin:$PATH" OPAL_PREFIX="$bundle/ompi"
    export PMIX_PREFIX="$bundle/ompi/lib/x86_64-linux-gnu/pmix2"
    export PMIX_MCA_mca_base_component_path="$bundle/ompi/lib/x86_64-linux-gnu/pmix2/lib/pmix"
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$bundle/ompi/deps"
  fi
  echo "bundle: $(du -sh "$SPEEDRUN_PREBUILT/gpu-bundle.tar.xz" | cut -f1) packed; $(cat "$bundle/COMMIT" 2>/dev/null || echo 'commit unknown')"
else
  step configure 600 cmake --preset default || { tail -20 "$work/configure.log"; finish 1; }
  step build 900 cmake --build --preset default -j "$jobs" --target speedrun speedrun_tests dev_cuda \
    || { tail -40 "$work/build.log"; finish 1; }
fi
for bin in "$speedrun" "$tests" "$devdir/dev_attention_flash" "$devdir/dev_rmsnorm"; do
  if [ ! -x "$bin" ]; then
    echo "missing: $bin"
    [ "$dry" = 1 ] || status=1
    continue
  fi
  missing="$(ldd "$bin" 2>/dev/null | awk '/not found/{print $1}' | tr '\n' ' ')"
  [ -n "$missing" ] && missing="; libraries not found here: $missing(libcuda comes with the GPU machine's driver)"
  echo "$(basename "$bin"): ok$missing"
done
# The binaries start here (no GPU needed), and every test filter below names existing tests
# (a renamed test would otherwise pass as "0 tests").
echo "speedrun --version: $("$speedrun" --version 2>&1 | head -1)"
"$tests" --gtest_list_tests >"$work/test-list.log" 2>&1 || { echo "speedrun_tests does not start:"; tail -5 "$work/test-list.log"; finish 1; }
filter_matches() { "$tests" --gtest_list_tests --gtest_filter="$1" 2>/dev/null | grep -c '^  '; }
if [ "$dry" != 1 ]; then
  "$speedrun" info >"$work/info.log" 2>&1
  echo "speedrun info rc=$?: $(grep -i -m2 -E 'device|cuda' "$work/info.log" | tr '\n' ' ')"
  nvidia-smi >"$work/nvidia-smi.log" 2>&1
fi

# ---- 2. CUDA tests ---------------------------------------------------------------------------
if [ "$tests_on" = 1 ]; then
section "CUDA tests (default kernels)"
# Test names, not files: CudaOpsTest cases live in tests/unit/ops/test_<op>.cpp, CudaModel in
# test_cuda_model.cpp, CudaOptimTest in test_cuda_optim.cpp.
groups=(
  'ops-elementwise:CudaOpsTest.Relu2*:CudaOpsTest.RmsNorm*:CudaOpsTest.QkNorm*:CudaOpsTest.Rotary*:CudaOpsTest.Convert*'
  'ops-embedding:CudaOpsTest.Embedding*'
  'ops-cross-entropy:CudaOpsTest.SoftcapCrossEntropy*'
  'ops-linear:CudaOpsTest.Linear*'
  'ops-attention:CudaOpsTest.Attention*:CudaOpsTest.Refuses*:CudaAttentionDispatch.*'
  'model:CudaModel.*'
  'optim-adamw-rmnp:CudaOptimTest.AdamW*:CudaOptimTest.Rmnp*'
  'optim-muon:CudaOptimTest.Muon*'
  'optim-newton-muon:CudaOptimTest.NewtonMuon*'
)
for g in "${groups[@]}"; do
  n="$(filter_matches "${g#*:}")"
  if [ "$n" -eq 0 ]; then
    echo "test-${g%%:*}: the filter ${g#*:} matches no test"
    status=1
    continue
  fi
  [ "$dry" = 1 ] && echo "test-${g%%:*}: $n tests"
  step "test-${g%%:*}" "$group_timeout" "$tests" --gtest_filter="${g#*:}"
done
section "CUDA tests with the opt-in kernels"
step test-flash-attention "$group_timeout" env SPEEDRUN_ATTENTION=flash "$tests" \
  --gtest_filter='CudaOpsTest.Attention*:CudaModel.*'
step test-rmsnorm-fast "$group_timeout" env SPEEDRUN_RMSNORM=fast "$tests" \
  --gtest_filter='CudaOpsTest.RmsNorm*:CudaOpsTest.QkNorm*:CudaModel.*'
step test-gemm-epilogue-fused "$group_timeout" env SPEEDRUN_GEMM_EPILOGUE=fused "$tests" \
  --gtest_filter='CudaOpsTest.Linear*:CudaModel.*'

# ---- 3. kernel drivers -----------------------------------------------------------------------
section "kernel drivers (dev/cuda)"
for name in attention_flash rmsnorm; do
  step "dev_$name" "$bench_timeout" "$devdir/dev_$name"
  [ "$dry" = 1 ] || grep -E '^(dev_|validation|checks|device-to-device|op |forward|backward|QK|target)' "$work/dev_$name.log"
done
fi

# ---- 4. sanitizers on the new kernels ----------------------------------------------------------
if [ "$sanitizer" = 1 ]; then
section "compute-sanitizer"
if command -v compute-sanitizer >/dev/null || [ "$dry" = 1 ]; then
  for tool in memcheck racecheck; do
    step "$tool-flash-attention" "$san_timeout" env SPEEDRUN_ATTENTION=flash compute-sanitizer --tool $tool \
      --error-exitcode 3 "$tests" --gtest_filter='CudaOpsTest.Attention*'
    step "$tool-rmsnorm-fast" "$san_timeout" env SPEEDRUN_RMSNORM=fast compute-sanitizer --tool $tool \
      --error-exitcode 3 "$tests" --gtest_filter='CudaOpsTest.RmsNorm*:CudaOpsTest.QkNorm*'
    # SPEEDRUN_TEST_SMALL_SHAPES: the linear cases' small shapes only (tests/unit/ops/test_linear.cpp).
    step "$tool-gemm-epilogue-fused" "$san_timeout" env SPEEDRUN_GEMM_EPILOGUE=fused SPEEDRUN_TEST_SMALL_SHAPES=1 \
      compute-sanitizer --tool $tool \
      --error-exitcode 3 "$tests" --gtest_filter='CudaOpsTest.LinearEpilogues*:CudaOpsTest.LinearQkv*'
  done
  [ "$sanitize_all" = 1 ] && step memcheck-all 900 compute-sanitizer --tool memcheck --error-exitcode 3 "$tests" \
    --gtest_filter='CudaOps*:CudaModel*:CudaOptim*'
else
  echo "compute-sanitizer: not on PATH (skipped)"
fi
fi

# ---- 5. benches ------------------------------------------------------------------------------
if [ "$bench" = 1 ]; then
section "benches: kernel table, micro-batch and whole step, optimizers"
track3=configs/track3-muon.json
step bench-kernels "$bench_timeout" "$speedrun" bench "$track3" --kernels --device cuda --steps 10 --warmup 3 \
  --json "$work/bench_kernels.json"
# The opt-in run selects every opt-in kernel set (its JSON names each: attention_kernel,
# rmsnorm_kernel, gemm_epilogue); the file names keep their earlier "flash_fast".
optin=(SPEEDRUN_ATTENTION=flash SPEEDRUN_RMSNORM=fast SPEEDRUN_GEMM_EPILOGUE=fused)
step bench-kernels-flash-fast "$bench_timeout" env "${optin[@]}" "$speedrun" bench \
  "$track3" --kernels --device cuda --steps 10 --warmup 3 --json "$work/bench_kernels_flash_fast.json"
[ "$dry" = 1 ] || sed -n '/^kernel table/,$p' "$work/bench-kernels.log" "$work/bench-kernels-flash-fast.log"
step bench-speedrun "$bench_timeout" "$speedrun" bench "$track3" --device cuda --steps 10 --warmup 3 \
  --json "$work/bench_speedrun.json"
step bench-speedrun-flash-fast "$bench_timeout" env "${optin[@]}" "$speedrun" bench \
  "$track3" --device cuda --steps 10 --warmup 3 --json "$work/bench_speedrun_flash_fast.json"
[ "$dry" = 1 ] || grep -h -E 'forward\+backward|MFU|whole step|memory in use' "$work/bench-speedrun.log" \
  "$work/bench-speedrun-flash-fast.log"
for c in track3-muon track3-newton-muon track3-rmnp; do
  step "bench-optim-$c" "$bench_timeout" "$speedrun" bench "configs/$c.json" --optimizers-only --device cuda \
    --steps 10 --warmup 3 --json "$work/bench_optim_$c.json"
done
fi

# ---- 6. the PyTorch side-by-side ------------------------------------------------------------------
if [ "$torch" = 1 ]; then
  section "PyTorch side-by-side (torch.compile)"
  step bench-torch-compiled 600 env PYTHONUNBUFFERED=1 "$py" scripts/bench_torch_gpu.py --compile --steps 10 \
    --warmup 5 --step-steps 3 --micro-batches 8 --json "$work/bench_torch_compiled.json"
  [ "$dry" = 1 ] || grep -E 'forward|backend|peak|whole step' "$work/bench-torch-compiled.log"
  for ours in bench_speedrun bench_speedrun_flash_fast; do
    if [ "$dry" = 1 ]; then
      echo "would run: $py scripts/gpu_ratio.py $work/$ours.json $work/bench_torch_compiled.json"
    elif [ -f "$work/$ours.json" ] && [ -f "$work/bench_torch_compiled.json" ]; then
      "$py" scripts/gpu_ratio.py "$work/$ours.json" "$work/bench_torch_compiled.json" --json "$work/ratio_$ours.json" \
        || status=1
    fi
  done
fi

# ---- 7. training on CUDA -------------------------------------------------------------------
if [ "$train" = 1 ]; then
  section "training on CUDA"
  runs="$work/runs"
  for act in f32 bf16; do
    step "train-quickstart-$act" "$bench_timeout" "$speedrun" train configs/quickstart.json --device cuda \
      --out-dir "$runs" --run-name "quickstart-$act" --no-progress --set train.activation_dtype=$act
    [ "$dry" = 1 ] || grep -E 'val_loss' "$work/train-quickstart-$act.log" | sed -n '1p;$p'
  done
fi

# ---- 7b. several ranks on the one GPU (issue 16) ---------------------------------------------
if [ "$mpi" = 1 ]; then
  section "several ranks on one GPU (scripts/cuda_mpi_check.sh)"
  step mpi-checks 420 scripts/cuda_mpi_check.sh "$speedrun" "$work/mpi"
  [ "$dry" = 1 ] || cat "$work/mpi/mpi-summary.log" 2>/dev/null
fi

# ---- 8. the gpu-mini optimizer comparison ------------------------------------------------------
if [ "$compare" = 1 ]; then
  section "gpu-mini optimizer comparison (scripts/gpu_compare.sh)"
  if [ "$dry" = 1 ]; then
    scripts/gpu_compare.sh --dry-run --speedrun "$speedrun" "$work/gpu-compare"
  else
    step gpu-compare 600 scripts/gpu_compare.sh --speedrun "$speedrun" "$work/gpu-compare"
    cat "$work/gpu-compare/compare/comparison.md" 2>/dev/null
  fi
fi

finish "$status"
