#!/usr/bin/env python3
"""Prints the side-by-side of `speedrun bench CONFIG --device cuda --json OURS` and
`scripts/bench_torch_gpu.py --json THEIRS`: ms per forward+backward of one micro-batch,
tokens/s, TFLOP/s, and the ratio ours / theirs in ms (below 1: speedrun is faster).
Refuses to compare runs of different shapes (micro-batch tokens or FLOPs per token).

    scripts/gpu_ratio.py ours.json theirs.json [--json ratio.json]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run (runpy too)
from atomic_write import write_json_atomically  # noqa: E402


def load(path, what):
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"gpu_ratio.py: cannot read {what} {path}: {e}")
    for key in ("micro_batch_ms", "micro_batch_tokens", "flops_per_token", "tokens_per_s", "tflops"):
        if not isinstance(j.get(key), (int, float)) or j[key] <= 0:
            sys.exit(f"gpu_ratio.py: {what} {path}: '{key}' is missing or not a positive number")
    return j


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ours", help="speedrun bench --device cuda --json output")
    ap.add_argument("theirs", help="scripts/bench_torch_gpu.py --json output")
    ap.add_argument("--json", help="also write the comparison here")
    a = ap.parse_args()
    ours, theirs = load(a.ours, "speedrun figures"), load(a.theirs, "PyTorch figures")
    if ours["micro_batch_tokens"] != theirs["micro_batch_tokens"]:
        sys.exit(f"gpu_ratio.py: different micro-batches: {ours['micro_batch_tokens']} tokens (speedrun) vs "
                 f"{theirs['micro_batch_tokens']} (PyTorch)")
    if abs(ours["flops_per_token"] - theirs["flops_per_token"]) > 1e-6 * ours["flops_per_token"]:
        sys.exit(f"gpu_ratio.py: different models: {ours['flops_per_token']:.0f} FLOP/token (speedrun) vs "
                 f"{theirs['flops_per_token']:.0f} (PyTorch)")
    ratio = ours["micro_batch_ms"] / theirs["micro_batch_ms"]
    torch_label = f"PyTorch {theirs.get('torch', '?')} ({theirs.get('dtype', '?')}" + \
        (", compiled)" if theirs.get("compiled") else ")")
    rows = [("speedrun (" + str(ours.get("activation_dtype", "?")) + ")", ours), (torch_label, theirs)]
    print(f"{'forward+backward of one micro-batch':40s} {'ms':>10s} {'tokens/s':>12s} {'TFLOP/s':>9s}")
    for label, j in rows:
        print(f"{label:40s} {j['micro_batch_ms']:10.3f} {j['tokens_per_s']:12.0f} {j['tflops']:9.1f}")
    print(f"ratio ours / theirs (ms): {ratio:.3f} ({'speedrun faster' if ratio < 1 else 'PyTorch faster'})"
          + (f"; speedrun MFU {100 * ours['mfu']:.1f}%" if isinstance(ours.get("mfu"), (int, float)) else ""))
    if a.json:
        write_json_atomically(a.json, {"ours_ms": ours["micro_batch_ms"], "theirs_ms": theirs["micro_batch_ms"], "ratio": ratio,
                       "ours_device": ours.get("device_name"), "theirs_device": theirs.get("device_name")})


if __name__ == "__main__":
    main()
