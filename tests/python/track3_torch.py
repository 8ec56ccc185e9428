"""An independent PyTorch implementation of the Track 3 GPT, AdamW, Muon and the
schedule, written from ../shared/specs (model-track3.md, optimizers.md), for the
reference tests. Works with Debian's torch 1.13 (no F.rms_norm, no
scaled_dot_product_attention) and computes in float64 by default."""
import math

import torch
import torch.nn.functional as F


def rms_norm(x, eps, gains=None):
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y if gains is None else y * gains


def rotary(x, base):
    """Half-truncated rotary on (B, T, H, D): D/4 frequencies (1/base)^(j/(D/4-1)), then D/4 zeros."""
    T, D = x.size(1), x.size(3)
    nf = D // 4
    freq = (1.0 / base) ** torch.linspace(0, 1, steps=nf, dtype=torch.float64)
    freq = torch.cat([freq, freq.new_zeros(nf)])
    theta = torch.outer(torch.arange(T, dtype=torch.float64), freq)
    cos, sin = theta.cos()[None, :, None, :].to(x.dtype), theta.sin()[None, :, None, :].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos + x2 * sin, -x1 * sin + x2 * cos), dim=-1)


def causal_attention(q, k, v, scale):
    """(B, T, H, D) in and out; an explicit masked softmax."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    T = q.size(2)
    scores = (q @ k.transpose(-2, -1)) * scale
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(dim=-1) @ v).transpose(1, 2)


def softcap(z, model_cfg):
    kind, cap = model_cfg["logit_softcap"], model_cfg["logit_cap"]
    if kind == "algebraic":
        return cap * z / torch.sqrt(z * z + cap * cap)
    if kind == "sigmoid":
        return cap * torch.sigmoid(z / (model_cfg["sigmoid_temperature"] * math.sqrt(model_cfg["d_model"])))
    return z


class Track3GPT:
    """Parameters in a dict name -> tensor (requires_grad), names as upstream."""

    def __init__(self, model_cfg, params):
        self.cfg = model_cfg
        self.p = params

    def logits(self, tokens):
        c, p = self.cfg, self.p
        B, T = tokens.shape
        H, D, eps = c["n_head"], c["head_dim"], c["rmsnorm_eps"]
        x = rms_norm(p["embed.weight"][tokens], eps, p["norm1.gains"])
        for l in range(c["n_layer"]):
            b = f"blocks.{l}."
            h = rms_norm(x, eps, p[b + "norm1.gains"])
            q = F.linear(h, p[b + "attn.q.weight"], p[b + "attn.q.bias"]).view(B, T, H, D)
            k = F.linear(h, p[b + "attn.k.weight"], p[b + "attn.k.bias"]).view(B, T, H, D)
            v = F.linear(h, p[b + "attn.v.weight"], p[b + "attn.v.bias"]).view(B, T, H, D)
            q, k = rotary(rms_norm(q, eps), c["rotary_base"]), rotary(rms_norm(k, eps), c["rotary_base"])
            y = causal_attention(q, k, v, c["attn_scale"]).reshape(B, T, H * D)
            x = x + F.linear(y, p[b + "attn.proj.weight"], p[b + "attn.proj.bias"])
            h = rms_norm(x, eps, p[b + "norm2.gains"])
            f = F.linear(h, p[b + "mlp.fc.weight"], p[b + "mlp.fc.bias"]).relu().square()
            x = x + F.linear(f, p[b + "mlp.proj.weight"], p[b + "mlp.proj.bias"])
        z = F.linear(rms_norm(x, eps, p["norm2.gains"]), p["proj.weight"], p["proj.bias"])
        return softcap(z, c)

    def loss(self, tokens, targets):
        logits = self.logits(tokens)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")


def lr_factor(schedule, step, steps):
    progress = step / steps
    eta = 1.0
    cd = schedule["cooldown_frac"]
    if cd > 0 and progress >= 1 - cd:
        w = (1 - progress) / cd
        eta = w + (1 - w) * schedule["min_factor"]
    if schedule["warmup_steps"] > 0:
        eta *= min(1.0, (step + 1) / schedule["warmup_steps"])
    return eta


NS_PRESETS = {"cubic": ((2.0, -1.5, 0.5), 12), "quintic": ((3.4445, -4.7750, 2.0315), 5)}


def newton_schulz(G, coefficients, steps):
    a, b, c = coefficients
    X = G
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    X = X / (X.norm() + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if transposed else X


class Muon:
    def __init__(self, params, entry):
        self.params, self.e = params, entry
        self.buf = [torch.zeros_like(p) for p in params]
        coeffs, steps = NS_PRESETS[entry["ns_preset"]]
        self.coeffs = tuple(entry["ns_coefficients"]) if entry.get("ns_coefficients") else coeffs
        self.steps = entry["ns_steps"] if entry.get("ns_steps") else steps

    def momentum(self, step):
        e = self.e
        if e.get("momentum_warmup_start") is None or e["momentum_warmup_steps"] <= 0:
            return e["momentum"]
        frac = min(1.0, step / e["momentum_warmup_steps"])
        return (1 - frac) * e["momentum_warmup_start"] + frac * e["momentum"]

    @torch.no_grad()
    def step(self, step, factor):
        lr, wd, mu = self.e["lr"] * factor, self.e["weight_decay"], self.momentum(step)
        for p, buf in zip(self.params, self.buf):
            g = p.grad
            buf.lerp_(g, 1 - mu)
            u = g.lerp(buf, mu) if self.e["nesterov"] else buf
            o = newton_schulz(u, self.coeffs, self.steps) * max(1.0, p.size(0) / p.size(1)) ** 0.5
            p.mul_(1 - lr * wd)
            p.add_(o, alpha=-lr)


class AdamW:
    """torch.optim.AdamW itself, with the schedule applied to the group's lr."""

    def __init__(self, params, entry):
        self.e = entry
        self.opt = torch.optim.AdamW(params, lr=entry["lr"], betas=tuple(entry["betas"]), eps=entry["eps"],
                                     weight_decay=entry["weight_decay"])

    def step(self, step, factor):
        for group in self.opt.param_groups:
            group["lr"] = self.e["lr"] * factor
        self.opt.step()


def make_optimizer(entry, params):
    return {"adamw": AdamW, "muon": Muon}[entry["type"]](params, entry)
