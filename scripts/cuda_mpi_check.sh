#!/usr/bin/env bash
# The multi-rank checks of issue 16 on a machine with ONE GPU (docs/distributed.md); called by
# scripts/cuda_check.sh (section "several ranks on one GPU"), or alone:
#   scripts/cuda_mpi_check.sh SPEEDRUN_BINARY OUT_DIR
# Needs mpirun (the system's, or the relocated Open MPI that scripts/gpu_bundle.sh packs:
# cuda_check.sh puts it on PATH) and python3 with numpy. Exit status 1 when a case failed.
# MPI_CHECK_DEVICE=cpu rehearses the cases' mechanics without a GPU ((a) is then skipped).
set -u
speedrun="$(realpath "$1")"
out="$(mkdir -p "$2" && realpath "$2")"
status=0
# Several ranks on the one GPU (issue 16, docs/distributed.md): NEVER RUN YET. Needs mpirun
# here (the system's, or the Open MPI that scripts/gpu_bundle.sh packs); each case writes
# $out/mpi-*.log and one line "mpi <case> PASS|FAIL|SKIP: why".
#  (a) mpirun -np 1 with SPEEDRUN_COMMUNICATOR=nccl vs the plain single process: NCCL starts
#      and changes nothing (bitwise: with one rank the optimizers take their unsharded paths);
#  (b) 2 ranks on the GPU (MPI staging device buffers through the host; and through NCCL when
#      NCCL >= 2.30 allows ranks to share a GPU): the device ZeRO-1 AdamW and distributed
#      Muon / Newton-Muon / RMNP, overlap on and off, give the single-process parameters to
#      test_mpi.py's tolerance;
#  (c) one of 2 ranks killed (SIGKILL) mid-run: both gone, non-zero exit, within 30 s.
mpi_case() { printf 'mpi %-34s %s\n' "$1" "$2" | tee -a "$out/mpi-summary.log"; }
{
  mpirun_bin="$(command -v mpirun || true)"
  if [ -z "$mpirun_bin" ]; then
    mpi_case "(a)(b)(c)" "SKIP: no mpirun on this machine"
  elif ! python3 -c 'import numpy' 2>/dev/null; then
    mpi_case "(a)(b)(c)" "SKIP: python3 has no numpy"
  else
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
    mpi_dir="$(mktemp -d)"
    # test_mpi.py's tiny model and data, on CUDA with f32 activations and fp32 Newton-Schulz
    # so that 1 vs 2 ranks differ only by the reduction order.
    # MPI_CHECK_DEVICE=cpu rehearses the cases' mechanics without a GPU ((a) is then skipped).
    mpi_device="${MPI_CHECK_DEVICE:-cuda}"
    python3 - "$mpi_dir" "$mpi_device" <<'PY' >"$out/mpi-setup.log" 2>&1
import json, random, struct, sys, pathlib
d = pathlib.Path(sys.argv[1]); (d / "data").mkdir()
device = sys.argv[2]
rng = random.Random(7)
def shard(path, toks):
    header = [20240520, 1, len(toks)] + [0] * 253
    path.write_bytes(struct.pack("<256i", *header) + struct.pack(f"<{len(toks)}H", *toks))
shard(d / "data/t_train_000001.bin", [rng.randrange(512) for _ in range(4000)])
shard(d / "data/t_val_000000.bin", [rng.randrange(512) for _ in range(300)])
adamw = {"type": "adamw", "lr": 0.01, "betas": [0.8, 0.95], "eps": 1e-10, "weight_decay": 0.01}
mats = {"muon": {"type": "muon", "lr": 0.02, "weight_decay": 0.025, "ns_precision": "fp32"},
        "newton_muon": {"type": "newton_muon", "lr": 0.02, "weight_decay": 0.025, "refresh_every": 2, "ema_beta": 0.3,
                        "ridge": 0.2, "mlp_proj_blocks": 2, "ns_precision": "fp32"},
        "rmnp": {"type": "rmnp", "lr": 0.01, "weight_decay": 0.025}}
for name, m in mats.items():
    cfg = {"name": name, "model": {"n_layer": 2, "d_model": 64, "n_head": 2, "head_dim": 32, "seq_len": 32,
                                   "vocab_size": 512, "padded_vocab_size": 512},
           "data": {"train_glob": "data/t_train_*.bin", "val_glob": "data/t_val_*.bin", "val_tokens": 256},
           "train": {"batch_tokens": 256, "micro_batch_seqs": 1, "steps": 6, "val_every": 3, "threads": 1,
                     "activation_dtype": "f32", "device": device, "out_dir": str(d / "runs")},
           "schedule": {"warmup_steps": 2, "cooldown_frac": 0.5},
           "optimizers": [dict(adamw, params=["embed.weight", "proj.weight"]),
                          dict(adamw, params=["*.bias", "*.gains"], lr=0.02, weight_decay=0.0),
                          dict(m, params=["blocks.*.weight"])]}
    (d / f"{name}.json").write_text(json.dumps(cfg))
PY
    compare() {  # want_run got_run bitwise|close -> prints the verdict, returns 0 on a pass
      python3 - "$mpi_dir/runs/$1/params" "$mpi_dir/runs/$2/params" "$3" <<'PY'
import sys, pathlib, numpy as np
a, b, mode = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
names = sorted(p.name for p in a.glob("*.npy"))
if not names or names != sorted(p.name for p in b.glob("*.npy")):
    print("FAIL: parameter files missing"); sys.exit(1)
worst, ok = 0.0, True
for n in names:
    x, y = np.load(a / n), np.load(b / n)
    worst = max(worst, float(np.max(np.abs(x - y))))
    ok &= np.array_equal(x, y) if mode == "bitwise" else np.allclose(y, x, rtol=1e-4, atol=2e-5)
print(("PASS" if ok else "FAIL") + f": max |param diff| {worst:.3g} ({mode})"); sys.exit(0 if ok else 1)
PY
    }
    mrun() {  # log name, ranks, env..., -- speedrun args...
      local log="$1" np="$2"; shift 2
      local envs=()
      while [ "$1" != "--" ]; do envs+=(-x "$1"); shift; done
      shift
      (cd "$mpi_dir" && timeout 300 "$mpirun_bin" --oversubscribe --bind-to none -np "$np" "${envs[@]}" "$speedrun" "$@") \
        >"$out/mpi-$log.log" 2>&1
    }
    single() { (cd "$mpi_dir" && timeout 300 "$speedrun" train "$1.json" --run-name "$2" --save-params --no-progress) \
                 >"$out/mpi-$2.log" 2>&1; }
    # (a)
    if [ "$mpi_device" != cuda ]; then
      verdict="SKIP: MPI_CHECK_DEVICE=$mpi_device"
    elif single muon single-muon && mrun np1-nccl 1 SPEEDRUN_COMMUNICATOR=nccl -- train muon.json --run-name np1-nccl \
         --save-params --no-progress && grep -q "nccl communicator" "$out/mpi-np1-nccl.log"; then
      verdict="$(compare single-muon np1-nccl bitwise)" || status=1
    else
      verdict="FAIL: see $out/mpi-np1-nccl.log"; status=1
    fi
    mpi_case "(a) np1 NCCL vs single process" "$verdict"
    # (b)
    nccl_code="$(grep -h -m1 -E '^#define NCCL_VERSION_CODE' /usr/include/nccl.h /usr/local/cuda/include/nccl.h 2>/dev/null | awk '{print $3}')"
    ways=(mpi)
    [ "${nccl_code:-0}" -ge 23000 ] && [ "$mpi_device" = cuda ] && ways+=(nccl)
    [ "${#ways[@]}" = 1 ] && mpi_case "(b) via NCCL" "SKIP: NCCL_VERSION_CODE ${nccl_code:-not found} < 23000 (2.30): ranks cannot share a GPU"
    for opt in muon newton_muon rmnp; do
      [ -d "$mpi_dir/runs/single-$opt" ] || single "$opt" "single-$opt"
      for way in "${ways[@]}"; do
        for mb in 0 0.001; do
          name="np2-$way-$opt-$mb"
          if mrun "$name" 2 SPEEDRUN_COMMUNICATOR=$way NCCL_MULTI_RANK_GPU_ENABLE=1 -- train "$opt.json" --run-name "$name" \
               --save-params --no-progress --set train.grad_bucket_mb=$mb; then
            verdict="$(compare "single-$opt" "$name" close)" || status=1
          else
            verdict="FAIL: see $out/mpi-$name.log"; status=1
          fi
          mpi_case "(b) 2 ranks $way $opt bucket $mb" "$verdict"
        done
      done
    done
    # (c): kill rank 1 once it is training; every rank must be gone, non-zero, within 30 s.
    for way in "${ways[@]}"; do
      mrun "kill-$way" 2 SPEEDRUN_COMMUNICATOR=$way NCCL_MULTI_RANK_GPU_ENABLE=1 SPEEDRUN_NCCL_TIMEOUT_S=20 -- \
        train muon.json --run-name "kill-$way" --no-progress --set train.steps=100000 --set train.val_every=100000 \
        --set data.epochs=100000 &
      job=$!
      pid=""
      for _ in $(seq 1 120); do
        pid="$(grep -o -m1 -E 'speedrun rank 1/2 .* pid [0-9]+' "$out/mpi-kill-$way.log" 2>/dev/null | grep -o -E '[0-9]+$')"
        [ -n "$pid" ] && grep -q "train_loss" "$mpi_dir/runs/kill-$way/metrics.jsonl" 2>/dev/null && break
        sleep 0.5
      done
      killed=0
      [ -n "$pid" ] && sleep 2 && kill -9 "$pid" && killed=1
      t1=$(date +%s)
      wait $job; rc=$?
      t2=$(date +%s)
      if [ "$killed" != 1 ]; then verdict="FAIL: rank 1 was not training when killed (see $out/mpi-kill-$way.log)"; status=1
      elif [ $rc -ne 0 ] && [ $((t2 - t1)) -le 30 ]; then verdict="PASS: exit $rc $((t2 - t1)) s after the kill"
      else verdict="FAIL: exit $rc $((t2 - t1)) s after the kill"; status=1; fi
      mpi_case "(c) kill 1 of 2 ranks ($way)" "$verdict"
    done
  fi
}
exit $status
