#!/usr/bin/env python3
"""Times the same model, batch and optimizers in PyTorch on the CPU, for the side-by-side
with `speedrun bench` (docs/performance.md). Uses the independent PyTorch model of the
reference tests (tests/python/track3_torch.py) in float32, with autograd.

    scripts/bench_torch_cpu.py configs/quickstart.json --threads 2 --steps 5

The config is read resolved (run `speedrun validate-config CONFIG > resolved.json` and
pass that, or pass the config itself when it states the model, train and optimizer keys
you need; missing keys fall back to the Track 3 defaults printed by validate-config).
"""
import argparse
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run (runpy too)
from atomic_write import write_json_atomically  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))


def resolved_config(path, speedrun):
    out = subprocess.run([speedrun, "validate-config", path], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--speedrun", default=str(HERE.parent / "build" / "speedrun"), help="to resolve the config")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    import torch
    import track3_torch

    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float32)
    cfg = resolved_config(args.config, args.speedrun)
    m, t = cfg["model"], cfg["train"]
    V, d, L = m["padded_vocab_size"], m["d_model"], m["n_layer"]
    hd, f = m["n_head"] * m["head_dim"], m["mlp_ratio"] * d
    gen = torch.Generator().manual_seed(0)
    params = {}

    def add(name, shape, std):
        params[name] = (torch.randn(*shape, generator=gen) * std if std else torch.zeros(*shape)).requires_grad_()

    add("embed.weight", (V, d), 1.0)
    for l in range(L):
        b = f"blocks.{l}."
        for x in "qkv":
            add(b + f"attn.{x}.weight", (hd, d), math.sqrt(0.33 / d))
            add(b + f"attn.{x}.bias", (hd,), 0)
        add(b + "attn.proj.weight", (d, hd), 0.02)  # nonzero so that every matmul does real work
        add(b + "attn.proj.bias", (d,), 0)
        add(b + "mlp.fc.weight", (f, d), math.sqrt(0.33 / d))
        add(b + "mlp.fc.bias", (f,), 0)
        add(b + "mlp.proj.weight", (d, f), 0.02)
        add(b + "mlp.proj.bias", (d,), 0)
        params[b + "norm1.gains"] = torch.ones(d, requires_grad=True)
        params[b + "norm2.gains"] = torch.ones(d, requires_grad=True)
    add("proj.weight", (V, d), 0.02)
    add("proj.bias", (V,), 0)
    params["norm1.gains"] = torch.ones(d, requires_grad=True)
    params["norm2.gains"] = torch.ones(d, requires_grad=True)
    model = track3_torch.Track3GPT(m, params)

    import fnmatch
    opts = []
    for entry in cfg["optimizers"]:
        names = [n for n in params if any(fnmatch.fnmatchcase(n, pat) for pat in entry["params"])]
        opts.append(track3_torch.make_optimizer(entry, [params[n] for n in names]))

    B, T = t["micro_batch_seqs"], m["seq_len"]
    micro_steps = t["batch_tokens"] // (B * T)
    tokens = torch.randint(0, m["vocab_size"], (B, T), generator=gen)
    targets = torch.randint(0, m["vocab_size"], (B, T), generator=gen)
    fb_ms, opt_ms, step_ms = [], [], []
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        for p in params.values():
            p.grad = None
        fb = 0.0
        for _ in range(micro_steps):
            f0 = time.perf_counter()
            model.loss(tokens, targets).backward()
            fb += time.perf_counter() - f0
        o0 = time.perf_counter()
        for o in opts:
            o.step(s, 1.0)
        o1 = time.perf_counter()
        if s >= args.warmup:
            fb_ms.append(1000 * fb / micro_steps)
            opt_ms.append(1000 * (o1 - o0))
            step_ms.append(1000 * (o1 - t0))
    step = statistics.median(step_ms)
    tokens_per_s = t["batch_tokens"] / (step / 1000)
    print(f"torch {torch.__version__} cpu, {args.threads} threads: forward+backward {statistics.median(fb_ms):.2f} ms "
          f"per micro-batch, optimizer {statistics.median(opt_ms):.2f} ms, training step {step:.2f} ms, "
          f"{tokens_per_s:.0f} tokens/s")
    if args.json:
        write_json_atomically(args.json, {
            "torch": torch.__version__, "threads": args.threads, "micro_batch_ms": statistics.median(fb_ms),
            "optimizer_ms": statistics.median(opt_ms), "step_ms": step, "tokens_per_s": tokens_per_s})


if __name__ == "__main__":
    main()
