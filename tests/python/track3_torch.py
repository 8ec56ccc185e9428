"""An independent PyTorch implementation of the Track 3 GPT, AdamW, Muon, Newton-Muon,
RMNP and the schedule, written from ../shared/specs (model-track3.md, optimizers.md), for the
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

    def logits(self, tokens, capture=None, step=0):
        """capture(layer, point, X): called with each Newton-Muon layer input X (tokens, n).
        `step` is ignored (nothing in Track 3 changes over a run; record26_torch uses it)."""
        c, p = self.cfg, self.p
        if capture is None:
            capture = lambda layer, point, x: None  # noqa: E731
        B, T = tokens.shape
        H, D, eps = c["n_head"], c["head_dim"], c["rmsnorm_eps"]
        x = rms_norm(p["embed.weight"][tokens], eps, p["norm1.gains"])
        for l in range(c["n_layer"]):
            b = f"blocks.{l}."
            h = rms_norm(x, eps, p[b + "norm1.gains"])
            capture(l, "attn_qkv", h.reshape(B * T, -1))
            q = F.linear(h, p[b + "attn.q.weight"], p[b + "attn.q.bias"]).view(B, T, H, D)
            k = F.linear(h, p[b + "attn.k.weight"], p[b + "attn.k.bias"]).view(B, T, H, D)
            v = F.linear(h, p[b + "attn.v.weight"], p[b + "attn.v.bias"]).view(B, T, H, D)
            q, k = rotary(rms_norm(q, eps), c["rotary_base"]), rotary(rms_norm(k, eps), c["rotary_base"])
            y = causal_attention(q, k, v, c["attn_scale"]).reshape(B, T, H * D)
            capture(l, "attn_proj", y.reshape(B * T, -1))
            x = x + F.linear(y, p[b + "attn.proj.weight"], p[b + "attn.proj.bias"])
            h = rms_norm(x, eps, p[b + "norm2.gains"])
            capture(l, "mlp_fc", h.reshape(B * T, -1))
            f = F.linear(h, p[b + "mlp.fc.weight"], p[b + "mlp.fc.bias"]).relu().square()
            capture(l, "mlp_proj", f.reshape(B * T, -1))
            x = x + F.linear(f, p[b + "mlp.proj.weight"], p[b + "mlp.proj.bias"])
        z = F.linear(rms_norm(x, eps, p["norm2.gains"]), p["proj.weight"], p["proj.bias"])
        return softcap(z, c)

    def loss(self, tokens, targets, capture=None, step=0):
        logits = self.logits(tokens, capture, step)
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
            # A stack of matrices (record26's qkv_w): each orthogonalized on its own, as upstream's
            # batched Newton-Schulz over the last two dimensions.
            o = torch.stack([newton_schulz(m, self.coeffs, self.steps) for m in u.reshape(-1, *u.shape[-2:])])
            o = o.reshape(u.shape) * max(1.0, p.size(-2) / p.size(-1)) ** 0.5
            p.mul_(1 - lr * wd)
            p.add_(o, alpha=-lr)


def capture_point(name):
    """'blocks.3.attn.k.weight' -> (3, 'attn_qkv'); None for parameters without a captured input."""
    parts = name.split(".")
    if parts[0] != "blocks" or len(parts) != 5:
        return None
    rest = ".".join(parts[2:])
    point = {"attn.q.weight": "attn_qkv", "attn.k.weight": "attn_qkv", "attn.v.weight": "attn_qkv",
             "attn.proj.weight": "attn_proj", "mlp.fc.weight": "mlp_fc", "mlp.proj.weight": "mlp_proj"}.get(rest)
    return None if point is None else (int(parts[1]), point)


class NewtonMuon(Muon):
    """Newton-Muon as Track 3 #15 runs it (optimizers.md): on refresh steps ((step+1) % k == 0) the
    inputs of the group's layers are captured per micro-batch (A += X^T X / tokens, count += 1);
    before that step's update C = C + beta (A/count - C) from C0 = initial_scale I, and
    P = (C + (ridge tr(C)/n + ridge_eps) I)^-1 by Cholesky (I where it fails); every step after the
    first refresh the gradient is replaced by G P (mlp.proj: per input block) before Muon."""

    def __init__(self, params, entry, names):
        super().__init__(params, entry)
        e = self.e
        self.keys = []
        self.stats = {}
        for p, n in zip(params, names):
            key = capture_point(n)
            if key is None or key[1] not in e["precondition"]:
                self.keys.append(None)
                continue
            blocks = e["mlp_proj_blocks"] if key[1] == "mlp_proj" else 1
            width = p.size(1) // blocks
            self.keys.append(key)
            self.stats.setdefault(key, dict(
                blocks=blocks, A=torch.zeros(blocks, width, width), count=0,
                C=torch.eye(width).repeat(blocks, 1, 1) * e["initial_scale"], P=None))
        self.failures = 0

    def refresh_step(self, step):
        return (step + 1) % self.e["refresh_every"] == 0

    def capture(self, layer, point, x):
        st = self.stats.get((layer, point))
        if st is None:
            return
        x = x.detach()
        nb = st["blocks"]
        xb = x.reshape(x.size(0), nb, -1).permute(1, 2, 0)  # (blocks, width, tokens)
        st["A"] += xb @ xb.transpose(1, 2) / x.size(0)
        st["count"] += 1

    def refresh(self):
        e = self.e
        for st in self.stats.values():
            if st["count"] > 0:
                K = st["A"] / st["count"]
                st["C"] = st["C"] + e["ema_beta"] * (K - st["C"])
            n = st["C"].size(-1)
            P = []
            for C in st["C"]:
                r = e["ridge"] * torch.trace(C) / n + e["ridge_eps"]
                L, info = torch.linalg.cholesky_ex(C + r * torch.eye(n))
                if info.item() != 0:
                    self.failures += 1
                    P.append(torch.eye(n))
                else:
                    P.append(torch.cholesky_inverse(L))
            st["P"] = torch.stack(P)
            st["A"].zero_()
            st["count"] = 0

    @torch.no_grad()
    def step(self, step, factor):
        if self.refresh_step(step) and self.stats:
            self.refresh()
        for p, key in zip(self.params, self.keys):
            P = None if key is None else self.stats[key]["P"]
            if P is None:
                continue
            nb = P.size(0)
            g = p.grad.reshape(p.size(0), nb, -1).permute(1, 0, 2)  # (blocks, rows, width)
            p.grad = (g @ P).permute(1, 0, 2).reshape(p.size(0), p.size(1))
        super().step(step, factor)


class Rmnp:
    """RMNP (optimizers.md): buf = mu buf + G; U = G + mu buf (or buf); rows to unit L2 norm
    (eps 1e-12); times sqrt(max(1, m/n)); decoupled wd."""

    def __init__(self, params, entry):
        self.params, self.e = params, entry
        self.buf = [torch.zeros_like(p) for p in params]

    def momentum(self, step):  # the warm-up rule of Muon (record #26), when configured
        e = self.e
        if e.get("momentum_warmup_start") is None or e.get("momentum_warmup_steps", 0) <= 0:
            return e["momentum"]
        frac = min(1.0, step / e["momentum_warmup_steps"])
        return (1 - frac) * e["momentum_warmup_start"] + frac * e["momentum"]

    @torch.no_grad()
    def step(self, step, factor):
        lr, wd, mu = self.e["lr"] * factor, self.e["weight_decay"], self.momentum(step)
        for p, buf in zip(self.params, self.buf):
            g = p.grad
            buf.mul_(mu).add_(g)
            u = g + mu * buf if self.e["nesterov"] else buf
            r = u / u.norm(dim=1, keepdim=True).clamp_min(self.e["eps"])
            r = r * max(1.0, p.size(0) / p.size(1)) ** 0.5
            p.mul_(1 - lr * wd)
            p.add_(r, alpha=-lr)


class AdamW:
    """torch.optim.AdamW itself, with the schedule applied to the group's lr.

    bias_correction_offset != 0 is for the tests' negative control only: a deliberately wrong
    AdamW (spelled out) whose bias corrections use step t + offset instead of t, the way an
    off-by-one step count would; the comparison with our run must then fail."""

    def __init__(self, params, entry, bias_correction_offset=0):
        self.e, self.offset = entry, bias_correction_offset
        # eps_placement "v": record #26's DistAdam (eps on sqrt(v), the step scaled by
        # sqrt(1 - b2^t) / (1 - b1^t)), spelled out below.
        self.eps_on_v = entry.get("eps_placement", "v_hat") == "v"
        if self.offset == 0 and not self.eps_on_v:
            self.opt = torch.optim.AdamW(params, lr=entry["lr"], betas=tuple(entry["betas"]), eps=entry["eps"],
                                         weight_decay=entry["weight_decay"])
        else:
            self.params, self.t = params, 0
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, step, factor):
        if self.offset == 0 and not self.eps_on_v:
            for group in self.opt.param_groups:
                group["lr"] = self.e["lr"] * factor
            self.opt.step()
            return
        lr, (b1, b2), eps, wd = self.e["lr"] * factor, self.e["betas"], self.e["eps"], self.e["weight_decay"]
        self.t += 1
        t = self.t + self.offset
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            p.mul_(1 - lr * wd)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            if self.eps_on_v:
                p.addcdiv_(m * ((1 - b2 ** t) ** 0.5 / (1 - b1 ** t)), v.sqrt() + eps, value=-lr)
            else:
                p.addcdiv_(m / (1 - b1 ** t), (v / (1 - b2 ** t)).sqrt() + eps, value=-lr)


def make_optimizer(entry, params, names=None, adamw_bias_correction_offset=0):
    if entry["type"] == "newton_muon":
        return NewtonMuon(params, entry, names)
    if entry["type"] == "adamw":
        return AdamW(params, entry, adamw_bias_correction_offset)
    return {"muon": Muon, "rmnp": Rmnp}[entry["type"]](params, entry)
