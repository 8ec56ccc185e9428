#!/usr/bin/env python3
"""Prints the side-by-side of `speedrun bench CONFIG --device cuda --json OURS` and
`scripts/bench_torch_gpu.py --json THEIRS`: ms per forward+backward of one micro-batch,
tokens/s, TFLOP/s, and the ratio ours / theirs in ms (below 1: speedrun is faster); with
both sides' whole-step times (step_ms), their ratio too; PyTorch's attention backend and
both sides' memory when the files have them.
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
    # Whole training steps (micro-batches + the optimizers), when both sides timed them.
    step_ratio = None
    if all(isinstance(j.get("step_ms"), (int, float)) and j["step_ms"] > 0 for j in (ours, theirs)):
        if ours.get("micro_batches_per_step") != theirs.get("micro_batches_per_step"):
            sys.exit(f"gpu_ratio.py: different steps: {ours.get('micro_batches_per_step')} micro-batches (speedrun) "
                     f"vs {theirs.get('micro_batches_per_step')} (PyTorch)")
        step_ratio = ours["step_ms"] / theirs["step_ms"]
        print(f"whole step ({ours['micro_batches_per_step']} micro-batches + optimizers): speedrun "
              f"{ours['step_ms']:.1f} ms, PyTorch {theirs['step_ms']:.1f} ms, ratio {step_ratio:.3f}")
    if theirs.get("attention_backend"):
        print(f"PyTorch attention backend: {theirs['attention_backend']}")
    gib = 2.0 ** 30
    if isinstance(theirs.get("peak_allocated_bytes"), (int, float)) or isinstance(ours.get("device_used_bytes"), int):
        ours_mem = ours.get("device_used_bytes")
        theirs_mem = theirs.get("step_peak_allocated_bytes") or theirs.get("peak_allocated_bytes")
        print("memory: speedrun " + (f"{ours_mem / gib:.2f} GiB in use (cudaMemGetInfo, CUDA context included)"
                                     if ours_mem else "?") +
              ", PyTorch " + (f"{theirs_mem / gib:.2f} GiB peak allocated (max_memory_allocated, no context)"
                              if theirs_mem else "?"))
    if a.json:
        write_json_atomically(a.json, {"ours_ms": ours["micro_batch_ms"], "theirs_ms": theirs["micro_batch_ms"], "ratio": ratio,
                       "ours_device": ours.get("device_name"), "theirs_device": theirs.get("device_name"),
                       "ours_step_ms": ours.get("step_ms"), "theirs_step_ms": theirs.get("step_ms"),
                       "step_ratio": step_ratio, "theirs_attention_backend": theirs.get("attention_backend"),
                       "ours_device_used_bytes": ours.get("device_used_bytes"),
                       "theirs_peak_allocated_bytes": theirs.get("step_peak_allocated_bytes")
                       or theirs.get("peak_allocated_bytes")})


if __name__ == "__main__":
    main()
