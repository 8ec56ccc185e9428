#!/usr/bin/env python3
"""Converts a speedrun checkpoint to a PyTorch state dict for upstream's Track 3 model.

    scripts/convert_to_pytorch.py CHECKPOINT|RUN_DIR OUT.pt [--overwrite] [--allow-mismatch]

Target: the `GPT` class of records/track_3_optimization/train_gpt_simple.py in
KellerJordan/modded-nanogpt, commit 5abb30686e5195c3266e25569f754b9c0e71437e (2026-06-20;
the version with biases and RMSNorm gains that ../shared/specs/model-track3.md describes;
older versions, e.g. 993c1bd, had neither and cannot hold these weights). There:
  GPT(vocab_size, num_layers, model_dim):
    embed = nn.Embedding(vocab_size, model_dim)      embed.weight (V, d)
    blocks[i] = Block(model_dim):
      attn = CausalSelfAttention(dim, head_dim=128): q, k, v = Linear(dim, hdim), proj = Linear(hdim, dim),
             rotary = Rotary(head_dim) with a registered buffer angular_freq (head_dim/2,)
      mlp = MLP(dim): fc = Linear(dim, 4 dim), proj = Linear(4 dim, dim)
      norm1, norm2 = RMSNorm(dim) with parameter `gains`
    proj = Linear(model_dim, vocab_size); norm1, norm2 = RMSNorm(model_dim)
  Linear is nn.Linear(bias=True): weight (out, in), bias (out,), y = x W^T + b.
Our parameter names (src/model/param_layout.h) are these names and our weights are
(out, in) too, so the conversion is a copy, no transpose. The state dict adds each
block's `attn.rotary.angular_freq` buffer, computed as upstream computes it (fp32
(1/1024)^linspace(0, 1, head_dim/4), then head_dim/4 zeros), so that
model.load_state_dict(sd) works with strict=True. Tensors stay f32 (our masters);
load_state_dict casts them into upstream's bf16 embedding.

Upstream's class hard-codes what our config makes settings: head_dim 128, n_head =
d_model / 128, MLP ratio 4, rotary base 1024, attention scale 0.12, the algebraic cap
at 15 and F.rms_norm's default eps (2^-23 for its fp32/bf16 compute). A checkpoint whose
model differs would load (when the shapes agree) and compute something else, so it is
refused, naming the keys, unless --allow-mismatch. The output is written atomically and
an existing OUT is kept unless --overwrite. Exit status: 0, 1 for an error, 2 for usage.
"""
import argparse
import collections
import io
import json
import pathlib
import sys

import numpy as np

import atomic_write
import safetensors_numpy

UPSTREAM = ("KellerJordan/modded-nanogpt records/track_3_optimization/train_gpt_simple.py @ "
            "5abb30686e5195c3266e25569f754b9c0e71437e")
# What upstream's GPT hard-codes, as our model settings.
UPSTREAM_FIXED = {"head_dim": 128, "mlp_ratio": 4, "rotary_base": 1024.0, "attn_scale": 0.12,
                  "logit_softcap": "algebraic", "logit_cap": 15.0, "rmsnorm_eps": 2.0 ** -23}


def mismatches(model):
    """The settings of our model config that upstream's class cannot represent."""
    out = [f"model.{k} = {model[k]!r} (upstream: {v!r})" for k, v in UPSTREAM_FIXED.items() if model[k] != v]
    if model["n_head"] * model["head_dim"] != model["d_model"]:
        out.append(f"model.n_head * head_dim = {model['n_head'] * model['head_dim']} != d_model = {model['d_model']} "
                   "(upstream: n_head = d_model / 128)")
    return out


def upstream_names(n_layer):
    """Upstream's state-dict keys in its order (parameters, then the rotary buffer)."""
    names = ["embed.weight"]
    for i in range(n_layer):
        b = f"blocks.{i}."
        for layer in ("q", "k", "v", "proj"):
            names += [f"{b}attn.{layer}.weight", f"{b}attn.{layer}.bias"]
        names.append(f"{b}attn.rotary.angular_freq")
        for layer in ("fc", "proj"):
            names += [f"{b}mlp.{layer}.weight", f"{b}mlp.{layer}.bias"]
        names += [f"{b}norm1.gains", f"{b}norm2.gains"]
    return names + ["proj.weight", "proj.bias", "norm1.gains", "norm2.gains"]


def angular_freq(torch, head_dim):
    """Upstream's Rotary buffer, computed the way it computes it (fp32)."""
    f = (1 / 1024) ** torch.linspace(0, 1, steps=head_dim // 4, dtype=torch.float32)
    return torch.cat([f, f.new_zeros(head_dim // 4)])


def state_dict_of(torch, tensors, model):
    """Upstream's state dict from our parameters (numpy arrays by our names)."""
    sd = collections.OrderedDict()
    for name in upstream_names(model["n_layer"]):
        if name.endswith("attn.rotary.angular_freq"):
            sd[name] = angular_freq(torch, model["head_dim"])
            continue
        if name not in tensors:
            raise KeyError(name)
        sd[name] = torch.from_numpy(np.array(tensors[name], dtype=np.float32))
    return sd


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a .safetensors checkpoint, or a run directory (its newest checkpoint)")
    p.add_argument("out", help="the .pt file to write (torch.save of the state dict)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="convert a model whose settings upstream's class hard-codes otherwise (it will compute "
                        "something else)")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    if out.exists() and not args.overwrite:
        sys.exit(f"error: {out} exists; pass --overwrite to replace it")
    try:
        path = safetensors_numpy.find_checkpoint(args.checkpoint)
        tensors, meta = safetensors_numpy.read_safetensors(path)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    if meta.get("speedrun.format") != safetensors_numpy.CHECKPOINT_FORMAT:
        sys.exit(f"error: {path}: metadata speedrun.format is {meta.get('speedrun.format')!r}, expected "
                 f"{safetensors_numpy.CHECKPOINT_FORMAT!r}")
    try:
        model = json.loads(meta["speedrun.config"])["model"]
    except (KeyError, json.JSONDecodeError) as e:
        sys.exit(f"error: {path}: metadata speedrun.config is missing or not a run config ({e})")
    problems = mismatches(model)
    if problems and not args.allow_mismatch:
        sys.exit(f"error: {path}: upstream's Track 3 GPT ({UPSTREAM}) cannot compute this model:\n  "
                 + "\n  ".join(problems) + "\n(--allow-mismatch converts anyway)")
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    import torch
    try:
        sd = state_dict_of(torch, tensors, model)
    except KeyError as e:
        sys.exit(f"error: {path}: no tensor {e.args[0]}")
    for name, t in sd.items():
        if name in tensors and tuple(t.shape) != tuple(tensors[name].shape):
            sys.exit(f"error: {path}: tensor {name} has shape {tuple(tensors[name].shape)}")
    buf = io.BytesIO()
    torch.save(sd, buf)
    atomic_write.write_atomically(out, buf.getvalue())
    print(f"wrote {out}: {len(sd)} tensors for GPT(vocab_size={model['padded_vocab_size']}, "
          f"num_layers={model['n_layer']}, model_dim={model['d_model']}) of {UPSTREAM} (from {path}, step "
          f"{meta.get('speedrun.step')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
