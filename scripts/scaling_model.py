#!/usr/bin/env python3
"""Scaling model: bytes moved per training step and the predicted step time at R ranks.

Models speedrun's own data-parallel implementation (docs/distributed.md): f32 gradients
reduce-scattered (AdamW's ZeRO-1 buckets; the matrix optimizers' rounds of R matrices
sorted by shape, each padded to the round's largest) and f32 parameters all-gathered
after the update; ring collectives, so a reduce-scatter or all-gather of S bytes moves
(R-1)/R * S bytes over each rank's link in each direction.

Step time = forward+backward compute + the reduce-scatter time the overlap does not hide
+ the optimizers' compute (their sharded share) + the all-gather time not hidden behind
it. The overlap is simulated: the backward's time is spread over its operations in
proportion to their backward FLOPs, each reduce-scatter is queued on the link when its
last gradient is final (in launch order, one at a time), and what remains after the
backward ends is exposed; in the step, each bucket's or round's all-gather is queued
after its update (the optimizers' time split evenly over them) and runs during the later
ones' updates, and what remains after the last update is exposed. Without overlap every
collective is exposed.

Inputs are measured figures (MEASURED, each naming its source) and hardware figures
(LINKS, each naming its source); every one can be overridden on the command line, so the
model reruns when a new measurement lands. Run: scripts/scaling_model.py [--markdown].
"""
import argparse
import json
import sys
from dataclasses import dataclass, field

# --- inputs -----------------------------------------------------------------------------
MEASURED = {
    # docs/gpu-validation.md, 2026-11-26 Run 2 (H200, commit e174030 binaries): one Track 3
    # micro-batch (64 x 1024 tokens) forward+backward, bf16, tensor-core attention, median
    # of 10 after 3 warm-up, CUDA events. (RMSNorm eps 2^-7 then; no effect on speed.)
    "fwd_bwd_ms_per_track3_microbatch": 283.9,
    # Same run, `speedrun bench configs/track3-muon.json --optimizers-only`: one GPU holding
    # every parameter. AdamW groups embed / head / 1-D, and Muon over 72 matrices.
    "adamw_step_ms": 0.33 + 0.33 + 0.06,
    "muon_step_ms": 8.50,
}
LINKS = {
    # H100 SXM5: fourth-generation NVLink, 18 links, 900 GB/s total bandwidth per GPU
    # (NVIDIA H100 Tensor Core GPU datasheet), i.e. 450 GB/s in each direction.
    "nvlink": 450e9,
    # One ConnectX-7 NDR InfiniBand port per GPU (DGX H100: 8 x 400 Gb/s), 50 GB/s in each
    # direction: the bound of a ring that crosses nodes.
    "infiniband": 50e9,
}
UPSTREAM_MS = {
    # ../shared/specs/performance.md, "Anchors": modded-nanogpt Track 3 baseline on
    # 8 x H100 (PyTorch 2.10, torch.compile), 524,288 tokens/step.
    "track3": 154.0,
    # ../shared/specs/model-record26.md: record #26 on 8 x H100, ~98 ms/step.
    "record26": 98.0,
}
TRACK3_FLOP_PER_TOKEN = 798e6  # ../shared/specs/performance.md, "How to count"
F32 = 4


@dataclass
class Param:
    name: str
    shape: tuple
    group: str          # "adamw" or "matrix"
    bwd_flop_per_token: float  # backward FLOPs per token of the op that finishes its gradient

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass
class Model:
    name: str
    params: list          # in backward order (the order their gradients become final)
    tokens_per_rank: int  # per step
    flop_per_token: float
    matrix_optimizer_step_ms: float  # one GPU, every matrix
    adamw_step_ms: float             # one GPU, every AdamW parameter
    notes: list = field(default_factory=list)


def linear(name, out, inp, group="matrix"):
    # dX and dW: 2 * 2 * out * in FLOPs per token.
    return Param(name, (out, inp), group, 4.0 * out * inp)


def track3(d=768, layers=12, vocab=50304, mlp=4, seq=1024, tokens_per_rank=65536):
    """Track 3 (../shared/specs/model-track3.md, configs/track3-muon.json), backward order as
    src/model/gpt.cpp reports it (GradReadySink)."""
    f = mlp * d
    ps = [linear("proj.weight", vocab, d, "adamw"), Param("proj.bias", (vocab,), "adamw", 0),
          Param("norm2.gains", (d,), "adamw", 0)]
    attn_bwd = 2.0 / 3.0 * 12.0 * d * seq / 2  # 2/3 of causal attention's 12 d keys_avg
    for l in reversed(range(layers)):
        b = f"blocks.{l}."
        ps += [linear(b + "mlp.proj.weight", d, f), Param(b + "mlp.proj.bias", (d,), "adamw", 0),
               linear(b + "mlp.fc.weight", f, d), Param(b + "mlp.fc.bias", (f,), "adamw", 0),
               Param(b + "norm2.gains", (d,), "adamw", 0),
               linear(b + "attn.proj.weight", d, d), Param(b + "attn.proj.bias", (d,), "adamw", 0)]
        for x in ("q", "k", "v"):
            ps += [linear(b + f"attn.{x}.weight", d, d), Param(b + f"attn.{x}.bias", (d,), "adamw", 0)]
        ps[-6].bwd_flop_per_token += attn_bwd  # q's gradient follows the attention backward
        ps.append(Param(b + "norm1.gains", (d,), "adamw", 0))
    ps += [Param("norm1.gains", (d,), "adamw", 0), Param("embed.weight", (vocab, d), "adamw", 0)]
    return Model("track3", ps, tokens_per_rank, TRACK3_FLOP_PER_TOKEN, MEASURED["muon_step_ms"],
                 MEASURED["adamw_step_ms"])


def record26(d=768, layers=12, vocab=50304, tokens_per_rank=49152, no_attention=(7,)):
    """Record #26 (../shared/specs/model-record26.md) as speedrun would run it: qkv as three
    d x d matrices, no biases, three value-embedding tables, scalars; f32 gradients."""
    f = 4 * d
    long_layers = {0, 4, 7, 11}
    # Mean window over the run: W grows linearly 128 -> 1792 tokens; short layers W/2.
    w_mean = (128 + 1792) / 2
    ps = [linear("lm_head.weight", vocab, d, "adamw")]
    attn_flop = 0.0
    for l in reversed(range(layers)):
        b = f"blocks.{l}."
        ps += [linear(b + "mlp.c_proj", d, f), linear(b + "mlp.c_fc", f, d)]
        if l in no_attention:
            continue
        keys = w_mean if l in long_layers else w_mean / 2
        attn_flop += 12.0 * d * keys
        ps.append(linear(b + "attn.c_proj", d, d))
        for x in ("q", "k", "v"):
            ps.append(linear(b + f"attn.{x}", d, d))
        ps[-3].bwd_flop_per_token += 2.0 / 3.0 * 12.0 * d * keys
    ps += [Param("scalars", (64,), "adamw", 0)]
    ps += [Param(f"ve{i}", (vocab, d), "adamw", 0) for i in range(3)]
    ps += [Param("embed", (vocab, d), "adamw", 0)]
    matmul = sum(p.numel for p in ps if p.group == "matrix") + vocab * d
    flop_per_token = 6.0 * matmul + attn_flop
    # Muon's cost scaled from Track 3's measured step: Newton-Schulz FLOPs ~ numel * min(m, n)
    # per product; quintic x 5 (3 products each) here vs cubic x 12 (2 products) there.
    t3 = [p for p in track3().params if p.group == "matrix"]
    ns = lambda ms, products: products * sum(p.numel * min(p.shape) for p in ms)
    muon_ms = MEASURED["muon_step_ms"] * ns([p for p in ps if p.group == "matrix"], 15) / ns(t3, 24)
    # AdamW is element-wise: scaled by its element count.
    t3_adamw = sum(p.numel for p in track3().params if p.group == "adamw")
    adamw_ms = MEASURED["adamw_step_ms"] * sum(p.numel for p in ps if p.group == "adamw") / t3_adamw
    return Model("record26", ps, tokens_per_rank, flop_per_token, muon_ms, adamw_ms,
                 ["compute scaled from Track 3's measured micro-batch by FLOPs (no record #26 kernels measured)",
                  "Muon and AdamW step times scaled from Track 3's measured ones (see record26())"])


# --- collectives ----------------------------------------------------------------------------
def matrix_rounds(params, ranks):
    """MatrixSharding: stable sort by shape (largest first), rounds of `ranks` matrices, each
    block padded to the round's largest. Returns [(indices into params, bytes sent per rank)]."""
    mats = [i for i, p in enumerate(params) if p.group == "matrix"]
    # Group order (the optimizer's parameter order) is the forward order: reverse of backward.
    mats = list(reversed(mats))
    order = sorted(mats, key=lambda i: params[i].shape, reverse=True)  # stable, as std::stable_sort
    rounds = []
    for base in range(0, len(order), ranks):
        members = order[base:base + ranks]
        width = max(params[i].numel for i in members)
        rounds.append((members, ranks * width * F32))
    return rounds


def adamw_group(p):
    """The AdamW config entry of a parameter (configs/track3-*.json; record #26's Adam groups)."""
    if p.name in ("embed.weight", "embed") or p.name.startswith("ve"):
        return "embeddings"
    if p.name in ("proj.weight", "lm_head.weight"):
        return "head"
    return "scalars"


def assign_buckets(sizes, bucket_bytes):
    """dist::assign_buckets (src/dist/grad_buckets.cpp): positions of consecutive buckets."""
    buckets, filled = [], 0
    for i, b in enumerate(sizes):
        if not buckets or (bucket_bytes > 0 and filled + b > bucket_bytes and filled > 0):
            buckets.append([])
            filled = 0
        buckets[-1].append(i)
        filled += b
    return buckets


def adamw_buckets(params, ranks, bucket_bytes):
    """AdamW's ZeRO-1 buckets: per config entry, in backward order, each padded to R shards."""
    buckets = []
    for group in ("embeddings", "head", "scalars"):
        idx = [i for i, p in enumerate(params) if p.group == "adamw" and adamw_group(p) == group]
        for positions in assign_buckets([params[i].numel * F32 for i in idx], bucket_bytes):
            buckets.append([idx[j] for j in positions])
    out = []
    for members in buckets:
        total = sum(params[i].numel for i in members)
        shard = -(-total // ranks)
        out.append((members, ranks * shard * F32))
    return out


def ring_seconds(total_bytes, ranks, bandwidth):
    """One ring reduce-scatter or all-gather of `total_bytes` (the whole padded buffer)."""
    return (ranks - 1) / ranks * total_bytes / bandwidth


def predict(model, ranks, bandwidth, bucket_bytes=25 * 2**20, fwd_bwd_ms=None):
    params = model.params
    if fwd_bwd_ms is None:
        per_token_ms = MEASURED["fwd_bwd_ms_per_track3_microbatch"] / 65536 / TRACK3_FLOP_PER_TOKEN
        fwd_bwd_ms = per_token_ms * model.tokens_per_rank * model.flop_per_token
    collectives = adamw_buckets(params, ranks, bucket_bytes) + matrix_rounds(params, ranks)
    moved = sum(ring_seconds(b, ranks, 1.0) for _, b in collectives)  # bytes per rank per direction
    # The backward (2/3 of forward+backward) spread over its ops by backward FLOPs.
    bwd_ms = fwd_bwd_ms * 2.0 / 3.0
    total_flop = sum(p.bwd_flop_per_token for p in params) or 1.0
    final_at, t = {}, fwd_bwd_ms / 3.0
    for i, p in enumerate(params):
        t += bwd_ms * p.bwd_flop_per_token / total_flop
        final_at[i] = t
    # Launch order: by the time the last member is final (ties keep registration order).
    ready = sorted(((max(final_at[i] for i in members), k, b) for k, (members, b) in enumerate(collectives)))
    link_free = 0.0
    rs_ms = 0.0
    for ready_ms, _, b in ready:
        dur = ring_seconds(b, ranks, bandwidth) * 1e3
        rs_ms += dur
        link_free = max(link_free, ready_ms) + dur
    exposed_rs = max(0.0, link_free - fwd_bwd_ms)
    opt_ms = (model.matrix_optimizer_step_ms + model.adamw_step_ms) / ranks
    # The same buffers gathered back, each after its update, in the step's order.
    ag_ms, t, link_free = 0.0, 0.0, 0.0
    for _, b in collectives:
        dur = ring_seconds(b, ranks, bandwidth) * 1e3
        ag_ms += dur
        t += opt_ms / len(collectives)
        link_free = max(link_free, t) + dur
    exposed_ag = max(0.0, link_free - opt_ms)
    return {
        "model": model.name, "ranks": ranks, "bandwidth_GBps": bandwidth / 1e9,
        "bytes_per_rank_per_step": 2 * moved,  # reduce-scatter + all-gather, each direction
        "fwd_bwd_ms": fwd_bwd_ms, "reduce_scatter_ms": rs_ms, "exposed_reduce_scatter_ms": exposed_rs,
        "hidden_ms": rs_ms - exposed_rs, "all_gather_ms": ag_ms, "exposed_all_gather_ms": exposed_ag,
        "optimizer_ms": opt_ms,
        "step_ms_overlap": fwd_bwd_ms + exposed_rs + opt_ms + exposed_ag,
        "step_ms_no_overlap": fwd_bwd_ms + rs_ms + ag_ms + opt_ms,
        "collectives": len(collectives),
        "upstream_ms": UPSTREAM_MS.get(model.name),
    }


def markdown(rows):
    out = ["| model | link | GB moved / rank / step | fwd+bwd ms | reduce-scatter ms (hidden) | all-gather ms (hidden) | "
           "optimizer ms | step ms, overlap | step ms, no overlap | upstream 8×H100 ms |", "|---" * 10 + "|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['link']} {r['bandwidth_GBps']:.0f} GB/s | "
                   f"{r['bytes_per_rank_per_step'] / 1e9:.2f} | {r['fwd_bwd_ms']:.1f} | "
                   f"{r['reduce_scatter_ms']:.2f} ({r['hidden_ms']:.2f}) | "
                   f"{r['all_gather_ms']:.2f} ({r['all_gather_ms'] - r['exposed_all_gather_ms']:.2f}) | "
                   f"{r['optimizer_ms']:.2f} | {r['step_ms_overlap']:.1f} | {r['step_ms_no_overlap']:.1f} | "
                   f"{r['upstream_ms'] if r['upstream_ms'] is not None else '—'} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--bucket-mb", type=float, default=25.0, help="train.grad_bucket_mb")
    ap.add_argument("--fwd-bwd-ms", type=float, default=MEASURED["fwd_bwd_ms_per_track3_microbatch"],
                    help="measured Track 3 micro-batch forward+backward (ms)")
    ap.add_argument("--muon-ms", type=float, default=MEASURED["muon_step_ms"])
    ap.add_argument("--adamw-ms", type=float, default=MEASURED["adamw_step_ms"])
    ap.add_argument("--nvlink-GBps", type=float, default=LINKS["nvlink"] / 1e9)
    ap.add_argument("--ib-GBps", type=float, default=LINKS["infiniband"] / 1e9)
    ap.add_argument("--markdown", action="store_true", help="print the docs/distributed.md table")
    a = ap.parse_args(argv)
    if a.ranks < 1 or a.bucket_mb < 0 or min(a.fwd_bwd_ms, a.nvlink_GBps, a.ib_GBps) <= 0:
        ap.error("--ranks must be >= 1, --bucket-mb >= 0, times and bandwidths > 0")
    MEASURED.update(fwd_bwd_ms_per_track3_microbatch=a.fwd_bwd_ms, muon_step_ms=a.muon_ms, adamw_step_ms=a.adamw_ms)
    rows = []
    for model in (track3(), record26()):
        for link, bw in (("NVLink", a.nvlink_GBps * 1e9), ("InfiniBand", a.ib_GBps * 1e9)):
            r = predict(model, a.ranks, bw, int(round(a.bucket_mb * 2**20)))
            r["link"] = link
            rows.append(r)
    print(markdown(rows) if a.markdown else json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
