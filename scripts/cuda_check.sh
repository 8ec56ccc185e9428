#!/usr/bin/env bash
# Everything a GPU session checks and measures, in one run (docs/cuda.md, "What a GPU session
# runs"; more than the device tool's 10 minutes per call by estimate, so split it with the
# --no-* flags below; each section's seconds are printed):
#   1. binaries: the build (cmake, default preset, + the dev/cuda drivers), or the bundle packed
#      by scripts/gpu_bundle.sh (SPEEDRUN_PREBUILT=DIR, for machines without the Debian build
#      dependencies, such as the lent ones);
#   2. every CUDA test, group by group (a crash in one does not hide the others), then again with
#      the opt-in kernels: SPEEDRUN_ATTENTION=flash (attention tests + the whole model),
#      SPEEDRUN_RMSNORM=fast (norm tests + the whole model), SPEEDRUN_FUSE_NORMS=1 (the fused
#      residual + norm and QK-norm + rotary tests + the whole model), SPEEDRUN_HEAD=fused (cross-entropy
#      tests + the whole model) and SPEEDRUN_RELU2=recompute (ReLU^2 tests + the whole model)
#      and SPEEDRUN_GEMM_EPILOGUE=fused (linear tests + the whole model);
#   3. the kernel drivers dev/cuda/dev_* (checks against fp64 references, timing tables);
#   4. compute-sanitizer memcheck and racecheck on the new kernels (flash attention, one-pass
#      RMSNorm, the fused residual + RMSNorm and QK-norm + rotary, the one-pass cross-entropy, the recomputing ReLU^2 backward, record #26's masked
#      attention, scaled sum and dot, the FP8 head's quantization kernels and cuBLASLt
#      products, the fused GEMM epilogues; --sanitize-all: memcheck over every CUDA test too);
#   5. `speedrun bench --kernels` (the per-op table) with the default kernels, with flash + fast +
#      fused epilogues and with the fused head + ReLU^2 recompute, `speedrun bench --device cuda` (one
#      micro-batch, whole steps) likewise, record #26's bench (configs/record26.json: FP8 head, and
#      again with the plain head), and the
#      optimizer benchmark on the Track 3 configs;
#   6. the PyTorch side-by-side: scripts/bench_torch_gpu.py (torch.compile; its SDPA backend,
#      peak memory, whole steps) and scripts/gpu_ratio.py;
#   7. short training runs on CUDA (the quickstart in f32 and bf16), then several ranks on the
#      one GPU (scripts/cuda_mpi_check.sh: mpirun -np 1 with NCCL vs one process, 2 ranks per
#      GPU with every optimizer, a killed rank);
#   8. with --compare: scripts/gpu_compare.sh (the gpu-mini LR sweep and optimizer comparison).
# Output: ${OUT:-build/cuda-check}. The device tool brings back at most 8 files from $OUT, so
# when OUT is set the logs are written to a scratch folder and packed into
# $OUT/cuda-check.tar.gz at the end; $OUT also gets summary.txt (every line printed here, the
# kernel table included), run.json (scripts/record_gpu_run.py manifest: date, commit, command,
# machine, every step's rc, seconds and test counts), the main JSON results (bench_speedrun,
# bench_torch_compiled with their micro_batch_ms, bench_kernels: the kernel table, ratio, ...)
# and the gpu-mini comparison table, in that order of priority: at most 8 files. Without OUT
# everything stays in build/cuda-check/. Back here, `scripts/record_gpu_run.py record FILES_AT`
# copies them into docs/gpu-runs/<date>-<commit>/ for the commit.
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
# (s, 300), PYTHON (python3), BUDGET_S (s, 540: the whole script's time; a step gets at most
# what is left and none starts with less than 15 s, so the results are packed before the device
# tool's 600-second limit; skipped steps say so, rc 125). Exit status 1 when any step failed.
# Everything at once now takes more than one call by estimate (never timed): split it, e.g. one
# call with --no-sanitizer --no-torch --no-mpi, then one with --no-tests --no-bench.
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
budget="${BUDGET_S:-540}"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
[ "$commit" != '?' ] && ! git diff --quiet HEAD 2>/dev/null && commit="$commit-dirty"
command_line="scripts/cuda_check.sh${*:+ $*}"
echo "cuda_check.sh $* at $(date -u +%FT%TZ), commit $commit, logs in $work"
: >"$work/steps.tsv"

# step NAME LIMIT CMD...: runs CMD (env assignments allowed: `env A=B cmd`) under `timeout LIMIT`,
# its output in $work/NAME.log; prints one line: rc, seconds, and gtest's PASSED/FAILED counts.
step() {
  local name="$1" limit="$2"
  shift 2
  if [ "$dry" = 1 ]; then
    printf 'would run %-32s (%4ss): %s\n' "$name" "$limit" "$*"
    return 0
  fi
  # The whole script stays inside BUDGET_S (the device tool kills a call at its limit, and
  # then nothing is packed): a step gets at most what is left, and none starts with < 15 s.
  local left=$((budget - (SECONDS - t_start)))
  if [ "$left" -lt 15 ]; then
    echo "skipped: BUDGET_S=$budget s spent" >"$work/$name.log"
    status=1
    printf '%s\t%d\t%d\t%s\n' "$name" 125 0 "$work/$name.log" >>"$work/steps.tsv"
    printf '%-34s skipped (BUDGET_S=%ss spent)\n' "$name" "$budget"
    return 125
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" >"$work/$name.log" 2>&1
  local rc=$?
  [ $rc -ne 0 ] && status=1
  printf '%s\t%d\t%d\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$work/$name.log" >>"$work/steps.tsv"
  printf '%-34s rc=%-3d %4ds  %s\n' "$name" "$rc" "$((SECONDS - t0))" \
    "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) |ERROR SUMMARY|RACECHECK SUMMARY' "$work/$name.log" | tr '\n' ' ')"
  return $rc
}
section() { echo; echo "== $* ($((SECONDS - t_start)) s so far)"; }
# finish STATUS: what comes back from the device tool (at most 8 files): summary.txt, the main
# JSON results, and everything else packed into one archive; then waits for tee and exits.
finish() {
  section "done: status $1"
  "$py" scripts/record_gpu_run.py manifest --steps "$work/steps.tsv" --out "$work/run.json" --status "$1" \
    --command "$command_line" --commit "$commit" --gpu-info "$work/gpu-info.csv" \
    ${bundle:+--bundle-commit "$bundle/COMMIT"} || echo "could not write run.json"
  [ -f "$work/gpu-compare/compare/comparison.md" ] && cp "$work/gpu-compare/compare/comparison.md" \
    "$work/gpu_mini_comparison.md"
  if [ "$work" != "$final" ]; then
    # summary.txt and the archive are two of the 8 files; the results fill the other six by priority.
    local kept=0
    for f in run.json bench_speedrun.json bench_torch_compiled.json bench_kernels.json ratio_bench_speedrun.json \
             bench_kernels_flash_fast.json gpu_mini_comparison.md; do
      [ -f "$work/$f" ] && [ "$kept" -lt 6 ] && cp "$work/$f" "$final/" && kept=$((kept + 1))
    done
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
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$work/gpu-info.csv" 2>/dev/null
fi

# ---- 2. CUDA tests ---------------------------------------------------------------------------
if [ "$tests_on" = 1 ]; then
section "CUDA tests (default kernels)"
# Test names, not files: CudaOpsTest cases live in tests/unit/ops/test_<op>.cpp, CudaModel in
# test_cuda_model.cpp, CudaOptimTest in test_cuda_optim.cpp.
groups=(
  'ops-elementwise:CudaOpsTest.Relu2*:CudaOpsTest.RmsNorm*:CudaOpsTest.ResidualRmsNorm*:CudaOpsTest.QkNorm*:CudaOpsTest.Rotary*:CudaOpsTest.Convert*'
  'ops-embedding:CudaOpsTest.Embedding*'
  'ops-cross-entropy:CudaOpsTest.SoftcapCrossEntropy*'
  'ops-linear:CudaOpsTest.Linear*'
  'ops-attention:CudaOpsTest.Attention*:CudaOpsTest.Refuses*:CudaAttentionDispatch.*'
  'ops-scale:CudaOpsTest.ScaledSum*:CudaOpsTest.Dot*'
  'ops-fp8-head:CudaOpsTest.Fp8Head*:OpsFp8.CudaHead*:CudaModel.Fp8Head*:CudaModel.Record26Fp8*'
  'model:CudaModel.*'
  'optim-adamw-rmnp:CudaOptimTest.AdamW*:CudaOptimTest.Rmnp*:CudaOptimTest.UpdateKernelsWrite*'
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
# The residual add fused into the next norm and QK-norm fused with rotary (the model's calls
# through the fused kernels).
step test-fuse-norms "$group_timeout" env SPEEDRUN_FUSE_NORMS=1 SPEEDRUN_RMSNORM=fast "$tests" \
  --gtest_filter='CudaOpsTest.ResidualRmsNorm*:CudaOpsTest.QkNormRotary*:CudaOpsTest.RmsNorm*:CudaModel.*'
# The bf16 weight copies written by the optimizers' update kernels, each checked bitwise
# against its master's conversion at every forward (model/weight_copies.h).
step test-optimizer-copies "$group_timeout" env SPEEDRUN_WEIGHT_COPIES=optimizer SPEEDRUN_CHECK_COPIES=1 "$tests" \
  --gtest_filter='CudaModel.*'
# Every opt-in that touches the weight copies at once: optimizer-written copies checked
# bitwise, with the fused epilogues' bias copies (1-D, the head's too under the fused head).
step test-copies-all-optin "$group_timeout" env SPEEDRUN_WEIGHT_COPIES=optimizer SPEEDRUN_CHECK_COPIES=1 \
  SPEEDRUN_GEMM_EPILOGUE=fused SPEEDRUN_HEAD=fused SPEEDRUN_RELU2=recompute "$tests" \
  --gtest_filter='CudaModel.OptimizerWritten*:CudaModel.LossSummed*'
step test-head-fused "$group_timeout" env SPEEDRUN_HEAD=fused "$tests" \
  --gtest_filter='CudaOpsTest.SoftcapCrossEntropy*:CudaModel.*'
step test-relu2-recompute "$group_timeout" env SPEEDRUN_RELU2=recompute "$tests" \
  --gtest_filter='CudaOpsTest.Relu2*:CudaModel.*'
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
    step "$tool-fuse-norms" "$san_timeout" env SPEEDRUN_FUSE_NORMS=1 compute-sanitizer --tool $tool \
      --error-exitcode 3 "$tests" --gtest_filter='CudaOpsTest.ResidualRmsNorm*:CudaOpsTest.QkNormRotary*'
    # The update kernels writing the bf16 copies, the device loss sum, the pinned id uploads.
    step "$tool-step-kernels" "$san_timeout" compute-sanitizer --tool $tool --error-exitcode 3 "$tests" \
      --gtest_filter='CudaOptimTest.UpdateKernelsWrite*:CudaModel.LossSummed*:CudaModel.OptimizerWritten*'
    step "$tool-head-relu2" "$san_timeout" env SPEEDRUN_HEAD=fused SPEEDRUN_RELU2=recompute compute-sanitizer \
      --tool $tool --error-exitcode 3 "$tests" \
      --gtest_filter='CudaOpsTest.SoftcapCrossEntropyFused*:CudaOpsTest.Relu2BackwardRecompute*'
    # Record #26's mask on the default kernels (tensor-core bf16, CUDA-core f32 and bf16: the
    # flash runs above include it) and the scaled-sum / dot kernels.
    step "$tool-masked-attention" "$san_timeout" compute-sanitizer --tool $tool \
      --error-exitcode 3 "$tests" --gtest_filter='CudaOpsTest.AttentionMask*:CudaOpsTest.ScaledSum*:CudaOpsTest.Dot*'
    # The head's kernels, and the record26 step that reads its buffers from the arena (f32 only:
    # the bf16 step runs the same FP8 calls on other activations, and sanitized steps are slow).
    step "$tool-fp8-head" "$san_timeout" compute-sanitizer --tool $tool --error-exitcode 3 "$tests" \
      --gtest_filter='CudaOpsTest.Fp8Head*:CudaModel.Fp8Head*:CudaModel.Record26Fp8StepMatchesCpu'
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
# rmsnorm_kernel, norm_fusion, gemm_epilogue); the file names keep their earlier "flash_fast".
optin=(SPEEDRUN_ATTENTION=flash SPEEDRUN_RMSNORM=fast SPEEDRUN_FUSE_NORMS=1 SPEEDRUN_GEMM_EPILOGUE=fused)
step bench-kernels-flash-fast "$bench_timeout" env "${optin[@]}" "$speedrun" bench \
  "$track3" --kernels --device cuda --steps 10 --warmup 3 --json "$work/bench_kernels_flash_fast.json"
step bench-kernels-head-relu2 "$bench_timeout" env SPEEDRUN_HEAD=fused SPEEDRUN_RELU2=recompute "$speedrun" bench \
  "$track3" --kernels --device cuda --steps 10 --warmup 3 --json "$work/bench_kernels_head_relu2.json"
[ "$dry" = 1 ] || sed -n '/^kernel table/,$p' "$work/bench-kernels.log" "$work/bench-kernels-flash-fast.log" \
  "$work/bench-kernels-head-relu2.log"
step bench-speedrun "$bench_timeout" "$speedrun" bench "$track3" --device cuda --steps 10 --warmup 3 \
  --json "$work/bench_speedrun.json"
step bench-speedrun-flash-fast "$bench_timeout" env "${optin[@]}" "$speedrun" bench \
  "$track3" --device cuda --steps 10 --warmup 3 --json "$work/bench_speedrun_flash_fast.json"
step bench-speedrun-optimizer-copies "$bench_timeout" env SPEEDRUN_WEIGHT_COPIES=optimizer "$speedrun" bench \
  "$track3" --device cuda --steps 10 --warmup 3 --json "$work/bench_speedrun_optimizer_copies.json"
step bench-speedrun-head-relu2 "$bench_timeout" env SPEEDRUN_HEAD=fused SPEEDRUN_RELU2=recompute "$speedrun" bench \
  "$track3" --device cuda --steps 10 --warmup 3 --json "$work/bench_speedrun_head_relu2.json"
[ "$dry" = 1 ] || grep -h -E 'forward\+backward|MFU|whole step|memory in use' "$work/bench-speedrun.log" \
  "$work/bench-speedrun-flash-fast.log" "$work/bench-speedrun-optimizer-copies.log" \
  "$work/bench-speedrun-head-relu2.log"
# Record #26 (masked attention on the default kernels; its run position: the middle of the run):
# the config as it is (the FP8 training head, model.fp8_head), then with the plain bf16 head
# (the FP8 head's share of the step is the difference).
step bench-record26 "$bench_timeout" "$speedrun" bench configs/record26.json --device cuda --steps 3 \
  --warmup 1 --json "$work/bench_record26.json"
"$py" -c 'import json, sys; c = json.load(open("configs/record26.json")); c["model"]["fp8_head"] = False
json.dump(c, open(sys.argv[1], "w"))' "$work/record26-plain-head.json"
step bench-record26-plain-head "$bench_timeout" "$speedrun" bench "$work/record26-plain-head.json" --device cuda \
  --steps 3 --warmup 1 --json "$work/bench_record26_plain_head.json"
[ "$dry" = 1 ] || grep -h -E 'record26 at step|forward\+backward|MFU|whole step|memory in use' \
  "$work/bench-record26.log" "$work/bench-record26-plain-head.log"
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
  # bf16 with the copies written by the optimizers, checked at every forward (a wrong copy
  # stops the run with an error naming the parameter).
  step train-quickstart-bf16-optimizer-copies "$bench_timeout" env SPEEDRUN_WEIGHT_COPIES=optimizer \
    SPEEDRUN_CHECK_COPIES=1 "$speedrun" train configs/quickstart.json --device cuda --out-dir "$runs" \
    --run-name quickstart-bf16-optimizer-copies --no-progress --set train.activation_dtype=bf16
  [ "$dry" = 1 ] || grep -E 'val_loss' "$work/train-quickstart-bf16-optimizer-copies.log" | sed -n '1p;$p'
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
