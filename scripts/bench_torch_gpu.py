#!/usr/bin/env python3
"""Times forward + backward of one micro-batch of the Track 3 GPT in PyTorch, for the
side-by-side with `speedrun bench CONFIG --device cuda` (docs/performance.md).

The model is the one of ../shared/specs/model-track3.md written as an nn.Module for speed
(the reference tests' tests/python/track3_torch.py is written for float64 checks on
torch 1.13, with an explicit T x T softmax): bf16 autocast (fp32 master weights, bf16
matmul inputs, fp32 logits and loss, as upstream), F.scaled_dot_product_attention with a
causal mask when the torch has it, optional torch.compile. Random tokens, SUM loss.
Times each micro-batch with torch.cuda.Event after warm-up and reports the median; the
FLOP count is speedrun's (src/model/flops.h): 6 x matmul parameters + 6 L T (H D).
Also reports which attention kernel SDPA picked (flash, cuDNN, efficient, math: read from the
profiler's op names), the peak memory (torch.cuda.max_memory_allocated) and, with
--step-steps, whole training steps: --micro-batches forward+backward passes, then Muon
(bf16 Newton-Schulz, track3-muon's cubic x 12 by default) on the blocks' matrices and
fused AdamW on the rest.
Self-contained: torch and the standard library (it runs on the lent GPU machine as is).

    scripts/bench_torch_gpu.py                      # Track 3: 12 x 768, seq 1024, 64 sequences, CUDA
    scripts/bench_torch_gpu.py --compile --json torch.json
    scripts/bench_torch_gpu.py --device cpu --layers 2 --dim 128 --heads 2 --head-dim 64 --seq 128 --batch 2
"""
import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run (runpy too)
from atomic_write import write_json_atomically  # noqa: E402

import torch
import torch.nn as nn
import torch.nn.functional as F


# F.scaled_dot_product_attention takes `scale` from torch 2.1 on.
SDPA_HAS_SCALE = hasattr(F, "scaled_dot_product_attention") and tuple(
    int(p) for p in torch.__version__.split("+")[0].split(".")[:2] if p.isdigit()) >= (2, 1)


def rms_norm(x, eps):
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.size(-1),), eps=eps)
    return x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + eps).to(x.dtype)


class Block(nn.Module):
    def __init__(self, d, heads, head_dim, mlp_ratio):
        super().__init__()
        hd = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.norm1_gains = nn.Parameter(torch.ones(d))
        self.norm2_gains = nn.Parameter(torch.ones(d))
        self.q, self.k, self.v = nn.Linear(d, hd), nn.Linear(d, hd), nn.Linear(d, hd)
        self.proj = nn.Linear(hd, d)
        self.fc = nn.Linear(d, mlp_ratio * d)
        self.mlp_proj = nn.Linear(mlp_ratio * d, d)

    def forward(self, x, cos, sin, scale, eps):
        B, T, _ = x.shape
        H, D = self.heads, self.head_dim
        h = rms_norm(x, eps) * self.norm1_gains
        q = rms_norm(self.q(h).view(B, T, H, D), eps)
        k = rms_norm(self.k(h).view(B, T, H, D), eps)
        v = self.v(h).view(B, T, H, D)
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        y = attention(q, k, v, scale).reshape(B, T, H * D)
        x = x + self.proj(y)
        h = rms_norm(x, eps) * self.norm2_gains
        return x + self.mlp_proj(F.relu(self.fc(h)).square())


def rotary(x, cos, sin):
    """Half-truncated rotary on (B, T, H, D) with (T, D/2) tables."""
    x1, x2 = x.chunk(2, dim=-1)
    c, s = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
    return torch.cat((x1 * c + x2 * s, -x1 * s + x2 * c), dim=-1)


def attention(q, k, v, scale):
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
    if SDPA_HAS_SCALE:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    elif hasattr(F, "scaled_dot_product_attention"):  # torch 2.0: no scale argument; its own is 1/sqrt(D)
        y = F.scaled_dot_product_attention(q * (scale * math.sqrt(q.size(-1))), k, v, is_causal=True)
    else:  # torch < 2.0 (Debian's 1.13): an explicit masked softmax
        T = q.size(2)
        s = (q @ k.transpose(-2, -1)) * scale
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=q.device).tril(), float("-inf"))
        y = s.float().softmax(dim=-1).to(v.dtype) @ v
    return y.transpose(1, 2)


class Track3GPT(nn.Module):
    def __init__(self, vocab, layers, d, heads, head_dim, mlp_ratio, seq, eps=2.0**-23, scale=0.12, base=1024.0,
                 cap=15.0):
        super().__init__()
        self.eps, self.scale, self.cap = eps, scale, cap
        self.embed = nn.Embedding(vocab, d)
        self.norm1_gains = nn.Parameter(torch.ones(d))
        self.blocks = nn.ModuleList(Block(d, heads, head_dim, mlp_ratio) for _ in range(layers))
        self.norm2_gains = nn.Parameter(torch.ones(d))
        self.head = nn.Linear(d, vocab)
        nf = head_dim // 4
        freq = (1.0 / base) ** torch.linspace(0, 1, steps=nf, dtype=torch.float32)
        freq = torch.cat([freq, freq.new_zeros(nf)])
        theta = torch.outer(torch.arange(seq, dtype=torch.float32), freq)
        self.register_buffer("cos", theta.cos(), persistent=False)
        self.register_buffer("sin", theta.sin(), persistent=False)
        # Random weights (the spec zeroes every "proj", which would make the timing
        # data-independent only by accident): small normals everywhere, gains one.
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 1.0 if name.startswith("embed") else math.sqrt(0.33 / p.size(1)))
                elif "gains" not in name:
                    p.zero_()

    def forward(self, tokens, targets):
        x = rms_norm(self.embed(tokens), self.eps) * self.norm1_gains
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.scale, self.eps)
        z = self.head(rms_norm(x, self.eps) * self.norm2_gains).float()  # fp32 logits, as upstream
        logits = self.cap * z / torch.sqrt(z * z + self.cap * self.cap)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), reduction="sum")


# Newton-Schulz presets as speedrun's ns_preset (src/config/run_config.h): (a, b, c) x steps.
NS_PRESETS = {"cubic": ((2.0, -1.5, 0.5), 12), "quintic": ((3.4445, -4.7750, 2.0315), 5)}


def newton_schulz(g, preset="cubic", eps=1e-7):
    """Muon's Newton-Schulz in bf16: X <- a X + (b A + c A^2) X with A = X X^T."""
    (a, b, c), steps = NS_PRESETS[preset]
    x = g.bfloat16()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / (x.norm() + eps)
    for _ in range(steps):
        m = x @ x.T
        x = a * x + (b * m + c * m @ m) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon as upstream applies it to the blocks' matrices: momentum 0.95 with Nesterov, the
    update orthogonalized by Newton-Schulz in bf16 (configs/track3-muon.json's cubic x 12 by
    default), scaled by sqrt(max(1, rows / cols)). One matrix at a time (upstream batches
    them across ranks)."""

    def __init__(self, params, lr=0.05, momentum=0.95, preset="cubic"):
        super().__init__(params, dict(lr=lr, momentum=momentum))
        self.preset = preset

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "m" not in state:
                    state["m"] = torch.zeros_like(p.grad)
                m = state["m"]
                m.lerp_(p.grad, 1 - group["momentum"])
                u = newton_schulz(p.grad.lerp(m, group["momentum"]), self.preset)
                p.add_(u.to(p.dtype), alpha=-group["lr"] * max(1.0, p.size(0) / p.size(1)) ** 0.5)


def make_optimizers(model, preset):
    """Track 3's split: Muon for the blocks' 2-D weights, AdamW for the embedding, the head and
    every 1-D parameter (gains, biases)."""
    matrices = [p for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2]
    ids = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if id(p) not in ids]
    fused = {"fused": True} if rest[0].is_cuda else {}  # torch 1.13's AdamW has no `fused`
    adamw = torch.optim.AdamW(rest, lr=0.008, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0, **fused)
    return [Muon(matrices, preset=preset), adamw]


def sdpa_backend(step, device):
    """Which attention kernel one micro-batch ran, read from the profiler's op names
    (torch.backends.cuda only says which backends are allowed, not which one was picked)."""
    names = {
        "_scaled_dot_product_flash_attention": "flash",
        "_scaled_dot_product_cudnn_attention": "cudnn",
        "_scaled_dot_product_efficient_attention": "efficient",
        "_scaled_dot_product_attention_math": "math",
        "_flash_attention_forward": "flash",
        "_efficient_attention_forward": "efficient",
        "flash_fwd_kernel": "flash",  # CUDA kernel names, should a compiled graph hide the aten op
        "fmha_cutlassF": "efficient",
    }
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        step()
        if device == "cuda":
            torch.cuda.synchronize()
    seen = sorted({backend for e in prof.key_averages() for op, backend in names.items() if op in e.key})
    if seen:
        return "+".join(seen)
    return "explicit softmax (no SDPA in this torch)" if not hasattr(F, "scaled_dot_product_attention") else "unknown"


def flops_per_token(vocab, layers, d, heads, head_dim, mlp_ratio, seq):
    """speedrun's count (src/model/flops.h): 6 per matmul parameter + 6 L T (H D)."""
    hd, f = heads * head_dim, mlp_ratio * d
    matmul = layers * (4 * d * hd + 2 * d * f) + d * vocab
    return 6.0 * matmul + 6.0 * layers * seq * hd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--mlp-ratio", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=50304, help="padded vocabulary (rows of embedding and head)")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64, help="sequences per micro-batch (Track 3: 64)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"], help="autocast dtype (f32: none)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (torch >= 2)")
    ap.add_argument("--steps", type=int, default=20, help="timed micro-batches (the median is reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed micro-batches first (compilation included)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--step-steps", type=int, default=3,
                    help="timed whole optimizer steps (after one untimed): --micro-batches forward+backward "
                         "passes, then Muon on the blocks' matrices and AdamW on the rest; 0: none")
    ap.add_argument("--micro-batches", type=int, default=8, help="micro-batches per step (Track 3: 8)")
    ap.add_argument("--ns", default="cubic", choices=sorted(NS_PRESETS),
                    help="Muon's Newton-Schulz preset (configs/track3-muon.json: cubic, 12 iterations)")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    for name in ("layers", "dim", "heads", "head_dim", "mlp_ratio", "vocab", "seq", "batch", "steps"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {a.warmup}")
    if a.step_steps < 0 or a.micro_batches < 1:
        ap.error(f"--step-steps must be >= 0 and --micro-batches >= 1, got {a.step_steps}, {a.micro_batches}")
    if a.head_dim % 4:
        ap.error(f"--head-dim must be a multiple of 4 (half-truncated rotary), got {a.head_dim}")
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_torch_gpu.py: --device cuda but torch sees no CUDA device (use --device cpu for a tiny run)")
    if a.compile and not hasattr(torch, "compile"):
        sys.exit(f"bench_torch_gpu.py: --compile needs torch >= 2.0, this is {torch.__version__}")
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    dev = torch.device(a.device)
    shape = (a.vocab, a.layers, a.dim, a.heads, a.head_dim, a.mlp_ratio, a.seq)
    model = Track3GPT(*shape).to(dev)
    step_fn = torch.compile(model) if a.compile else model
    gen = torch.Generator().manual_seed(1234)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq), generator=gen).to(dev)
    targets = torch.randint(0, a.vocab, (a.batch, a.seq), generator=gen).to(dev)
    use_autocast = a.dtype == "bf16"

    def fwd_bwd():
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=use_autocast):
            loss = step_fn(tokens, targets)
        loss.backward()  # gradients accumulate in fp32 .grad, as over micro-batches
        return loss

    cuda = a.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(a.warmup + a.steps):
        if a.device == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = fwd_bwd()
            stop.record()
            stop.synchronize()
            ms = start.elapsed_time(stop)
        else:
            t0 = time.perf_counter()
            loss = fwd_bwd()
            ms = 1000.0 * (time.perf_counter() - t0)
        if i >= a.warmup:
            times.append(ms)
    loss = float(loss)
    if not math.isfinite(loss):
        sys.exit(f"bench_torch_gpu.py: the loss is {loss}")

    # Peak memory of the forward+backward runs above (allocated by tensors; reserved adds the
    # caching allocator's slack). Our side reports the device memory in use (cudaMemGetInfo).
    peak = torch.cuda.max_memory_allocated(dev) if cuda else None
    peak_reserved = torch.cuda.max_memory_reserved(dev) if cuda else None
    try:  # a profiler that fails must not cost the timings above
        backend = sdpa_backend(fwd_bwd, a.device)
    except Exception as e:  # noqa: BLE001
        backend = f"unknown (profiler failed: {type(e).__name__}: {e})"

    # A whole training step: the micro-batches' gradients accumulate, then the optimizers step.
    step_times = []
    if a.step_steps > 0:
        optimizers = make_optimizers(model, a.ns)
        if cuda:  # the steps' own peak: optimizer state and all
            torch.cuda.reset_peak_memory_stats(dev)

        def whole_step():
            for _ in range(a.micro_batches):
                fwd_bwd()
            for opt in optimizers:
                opt.step()
            model.zero_grad(set_to_none=False)

        for i in range(1 + a.step_steps):
            t0 = time.perf_counter()
            if cuda:
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                whole_step()
                stop.record()
                stop.synchronize()
                ms_step = start.elapsed_time(stop)
            else:
                whole_step()
                ms_step = 1000.0 * (time.perf_counter() - t0)
            if i >= 1:
                step_times.append(ms_step)
    step_ms = statistics.median(step_times) if step_times else None
    step_peak = torch.cuda.max_memory_allocated(dev) if cuda and step_times else None

    ms = statistics.median(times)
    tokens_per_micro = a.batch * a.seq
    tokens_per_s = tokens_per_micro / (ms / 1000.0)
    flops = flops_per_token(*shape)
    tflops = flops * tokens_per_s / 1e12
    name = torch.cuda.get_device_name(dev) if a.device == "cuda" else "cpu"
    print(f"PyTorch {torch.__version__} on {name}: {a.layers} layers, d={a.dim}, {a.heads}x{a.head_dim} heads, "
          f"seq {a.seq}, micro-batch {a.batch} x {a.seq} tokens, {a.dtype}{' compiled' if a.compile else ''}")
    print(f"forward+backward: {ms:.3f} ms per micro-batch (median of {a.steps} after {a.warmup} warm-up), "
          f"{tokens_per_s:.0f} tokens/s, {flops / 1e6:.1f} MFLOP/token, {tflops:.3f} TFLOP/s achieved")
    print(f"attention backend (profiler): {backend}")
    if peak is not None:
        print(f"peak memory: {peak / 2**30:.2f} GiB allocated, {peak_reserved / 2**30:.2f} GiB reserved "
              f"(forward+backward)" + (f"; {step_peak / 2**30:.2f} GiB allocated over whole steps" if step_peak else ""))
    if step_ms is not None:
        print(f"whole step: {step_ms:.3f} ms ({a.micro_batches} micro-batches + Muon ({a.ns} NS)/AdamW; median of "
              f"{a.step_steps} after 1 warm-up)")
    if a.json:
        write_json_atomically(a.json, {"framework": "pytorch", "torch": torch.__version__, "device": a.device, "device_name": name,
                       "dtype": a.dtype, "compiled": a.compile, "layers": a.layers, "d_model": a.dim,
                       "heads": a.heads, "head_dim": a.head_dim, "vocab": a.vocab, "seq": a.seq,
                       "micro_batch_seqs": a.batch, "micro_batch_tokens": tokens_per_micro, "timed": a.steps,
                       "warmup": a.warmup, "micro_batch_ms": ms, "micro_batch_ms_all": times,
                       "tokens_per_s": tokens_per_s, "flops_per_token": flops, "tflops": tflops, "loss": loss,
                       "attention_backend": backend, "peak_allocated_bytes": peak,
                       "peak_reserved_bytes": peak_reserved, "micro_batches_per_step": a.micro_batches,
                       "step_ms": step_ms, "ns_preset": a.ns, "step_ms_all": step_times, "step_peak_allocated_bytes": step_peak})


if __name__ == "__main__":
    main()
