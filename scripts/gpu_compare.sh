#!/usr/bin/env bash
# The GPU optimizer comparison of issue 18 (docs/optimizers.md, "On a GPU"), for a GPU session:
#   1. a short learning-rate sweep: each configs/gpu-mini-*.json with its block-matrix
#      optimizer's lr (optimizers[3].lr) at 0.5x, 1x and 2x the config's, one seed each, in one
#      `speedrun compare --device cuda` (12 runs, one at a time);
#   2. each config's optimizer step alone (`bench --optimizers-only`: the per-step optimizer cost);
#   3. the comparison itself: the four configs x 2 seeds (Muon first: the t-tests' reference),
#      `speedrun compare --device cuda --seeds 2` (8 runs), with its table, t-tests and plots.
# Everything is written under DIR (default ${OUT:-build/gpu-compare}/gpu-compare): sweep/ and
# compare/ are speedrun compare's own output directories; summary lines go to stdout.
#
#   scripts/gpu_compare.sh [--speedrun BIN] [--no-sweep] [--seeds N] [--dry-run] [DIR]
#
# --dry-run writes the sweep's configs and prints the commands without running them (works
# without a GPU; tests/python/test_gpu_scripts.py runs it). Exit 1 when a step fails.
set -u
cd "$(dirname "$0")/.."
speedrun=./build/speedrun
sweep=1
seeds=2
dry=0
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --speedrun) speedrun="$2"; shift 2 ;;
    --no-sweep) sweep=0; shift ;;
    --seeds) seeds="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "gpu_compare.sh: unknown option $1" >&2; exit 2 ;;
    *) dir="$1"; shift ;;
  esac
done
dir="${dir:-${OUT:-build/gpu-compare}/gpu-compare}"
mkdir -p "$dir" || { echo "gpu_compare.sh: cannot create $dir" >&2; exit 1; }
py="${PYTHON:-python3}"
configs=(configs/gpu-mini-muon.json configs/gpu-mini-adamw.json configs/gpu-mini-newton-muon.json
         configs/gpu-mini-rmnp.json)
run() {  # prints the command; runs it unless --dry-run
  echo "+ $*"
  [ "$dry" = 1 ] && return 0
  "$@"
}
status=0

if [ "$sweep" = 1 ]; then
  # Sweep configs: copies with the lr scaled and the data globs made absolute (they are
  # relative to the config's own folder), named <config>-lr<factor>.
  mkdir -p "$dir/sweep-configs"
  "$py" - "$dir/sweep-configs" "${configs[@]}" <<'PY' || exit 1
import json, os, sys
out = sys.argv[1]
for path in sys.argv[2:]:
    base = json.load(open(path))
    here = os.path.dirname(os.path.abspath(path))
    for factor in (0.5, 1.0, 2.0):
        cfg = json.loads(json.dumps(base))
        entry = cfg["optimizers"][3]
        assert entry["params"] == ["blocks.*.weight"], path
        entry["lr"] = round(entry["lr"] * factor, 10)
        cfg["name"] = f"{base['name']}-lr{factor:g}"
        for key in ("train_glob", "val_glob"):
            cfg["data"][key] = os.path.normpath(os.path.join(here, cfg["data"][key]))
        with open(os.path.join(out, cfg["name"] + ".json"), "w") as f:
            json.dump(cfg, f, indent=2)
PY
  sweep_configs=()
  for c in "${configs[@]}"; do
    name="$(basename "$c" .json)"
    for f in 0.5 1 2; do sweep_configs+=("$dir/sweep-configs/$name-lr$f.json"); done
  done
  start=$SECONDS
  run "$speedrun" compare "${sweep_configs[@]}" --device cuda --seeds 1 --out "$dir/sweep" --no-progress --no-plots \
    || status=1
  echo "gpu_compare: sweep rc=$status in $((SECONDS - start)) s: $dir/sweep/comparison.md"
fi

# The optimizers' own cost per step at this size (the table's "optimizer ms/step" column).
for c in "${configs[@]}"; do
  name="$(basename "$c" .json)"
  run "$speedrun" bench "$c" --optimizers-only --device cuda --steps 10 --warmup 3 --json "$dir/bench-optim-$name.json" \
    >"$dir/bench-optim-$name.log" 2>&1 || { status=1; echo "gpu_compare: bench --optimizers-only $name failed"; }
  [ "$dry" = 1 ] && cat "$dir/bench-optim-$name.log"
done

start=$SECONDS
run "$speedrun" compare "${configs[@]}" --device cuda --seeds "$seeds" --out "$dir/compare" --no-progress || status=1
echo "gpu_compare: comparison rc=$status in $((SECONDS - start)) s: $dir/compare/comparison.md"
exit $status
