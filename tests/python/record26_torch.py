"""An independent PyTorch implementation of the modded-nanogpt Track 1 record #26 model
(../shared/specs/model-record26.md; upstream train_gpt.py at commit 345b2fb), for the
reference tests (test_reference_record26.py). Written from the spec and upstream's code, not
from ours: the attention mask is upstream's block-mask construction (create_blockmasks,
BlockMask.from_kv_blocks with the document_causal mask_mod), transcribed literally and
expanded to a dense (T, T) mask, since torch 1.13 has no FlexAttention. Computes in the
parameters' dtype (float64 in the tests)."""
import torch
import torch.nn.functional as F

from track3_torch import rms_norm, rotary, softcap


def next_multiple_of_n(v, n):
    """Upstream's helper: the smallest multiple of n, at least n, that is >= v."""
    return next(x for x in range(n, int(v) + 1 + n, n) if x >= v)


def window_blocks(model_cfg, step, steps):
    """Upstream's get_window_size_blocks: next_multiple_of_n(1728 * step/steps, 128) // 128."""
    bs = model_cfg["attn_block_size"]
    return next_multiple_of_n(model_cfg["window_tokens"] * (step / steps), bs) // bs


def upstream_block_mask(docs, block_size, window):
    """The dense (T, T) bool mask of upstream's build_bm(window) for one packed sequence whose
    document ids are `docs` (T,), T a multiple of block_size (upstream asserts it)."""
    T = docs.numel()
    nb = T // block_size
    block_idx = torch.arange(nb)
    causal_blockmask_any = block_idx[:, None] >= block_idx
    causal_blockmask_all = block_idx[:, None] > block_idx
    docs_low = docs.view(-1, block_size)[:, 0].contiguous()
    docs_high = docs.view(-1, block_size)[:, -1].contiguous()
    document_blockmask_any = (docs_low[:, None] <= docs_high) & (docs_high[:, None] >= docs_low)
    document_blockmask_all = (docs_low[:, None] == docs_high) & (docs_high[:, None] == docs_low)
    blockmask_any = causal_blockmask_any & document_blockmask_any
    blockmask_all = causal_blockmask_all & document_blockmask_all

    def dense_to_ordered(dense):
        num_blocks = dense.sum(dim=-1, dtype=torch.int32)
        # argsort(stable) then flip: the set blocks first, nearest first.
        indices = torch.sort(dense.to(torch.int32), dim=-1, descending=False, stable=True).indices.flip(-1)
        return num_blocks, indices

    partial_num, partial_idx = dense_to_ordered(blockmask_any & ~blockmask_all)
    full_num, full_idx = dense_to_ordered(blockmask_all)
    w = torch.tensor(window, dtype=torch.int32)
    keep_partial = torch.clamp_max(partial_num, torch.clamp_min(w - full_num, 1))
    keep_full = torch.clamp_max(full_num, w - 1)
    # BlockMask.from_kv_blocks: query block q visits partial_idx[q, :keep_partial[q]] with the
    # mask_mod applied and full_idx[q, :keep_full[q]] without it (a negative count visits none).
    pos = torch.arange(T)
    mask_mod = (pos[:, None] >= pos[None, :]) & (docs[:, None] == docs[None, :])  # document_causal
    dense = torch.zeros(T, T, dtype=torch.bool)
    for q in range(nb):
        rows = slice(q * block_size, (q + 1) * block_size)
        for j in range(max(0, int(keep_partial[q]))):
            kb = int(partial_idx[q, j])
            cols = slice(kb * block_size, (kb + 1) * block_size)
            dense[rows, cols] = mask_mod[rows, cols]
        for j in range(max(0, int(keep_full[q]))):
            kb = int(full_idx[q, j])
            dense[rows, kb * block_size:(kb + 1) * block_size] = True
    return dense


def round_to_format(x, mantissa_bits, min_exponent, max_value):
    """x rounded to the nearest value of a binary float format with `mantissa_bits` stored
    mantissa bits, smallest normal exponent `min_exponent` (subnormals below it) and largest
    finite value `max_value`, ties to even; overflow saturates to +-max_value (the .satfinite
    conversions record #26's compiled casts use). Written from the OCP FP8 spec and IEEE 754:
    the quantum of |x| is 2^(max(floor(log2 |x|), min_exponent) - mantissa_bits)."""
    a = x.abs()
    _, e = torch.frexp(a)  # a = m 2^e, m in [0.5, 1): floor(log2 a) = e - 1
    exponent = torch.clamp(e - 1, min=min_exponent)
    quantum = torch.ldexp(torch.ones_like(a), exponent - mantissa_bits)
    r = torch.round(a / quantum) * quantum  # torch.round: half to even; a / quantum is exact
    r = torch.clamp(r, max=max_value)
    return torch.copysign(r, x)


def e4m3(x):
    return round_to_format(x, 3, -6, 448.0)


def e5m2(x):
    return round_to_format(x, 2, -14, 57344.0)


def bf16(x):
    return round_to_format(x, 7, -126, float(torch.finfo(torch.bfloat16).max))


def f32(v):
    """A Python float rounded to float32, as the scales reach the kernels."""
    return float(torch.tensor(v, dtype=torch.float32))


class Fp8Head(torch.autograd.Function):
    """Upstream's nanogpt::mm / mm_backward (train_gpt.py at 345b2fb, lines 26-103) with the FP8
    and bf16 roundings emulated in the parameters' dtype: x_f8 = e4m3(x / x_s), w_f8 =
    e4m3(w / w_s), out = bf16(x_f8 w_f8^T x_s w_s); backward g_f8 = e5m2(bf16(g) / grad_s),
    dx = bf16(g_f8 w_f8 grad_s w_s), dw = g_f8^T x_f8 x_s grad_s. The scales are rounded to
    float32 (the kernels' type) and the products' factors are their float32 products."""

    @staticmethod
    def forward(ctx, x, w, x_s, w_s, grad_s):
        xq, wq = e4m3(x / x_s), e4m3(w / w_s)
        ctx.save_for_backward(xq, wq)
        ctx.scales = x_s, w_s, grad_s
        return bf16((xq @ wq.T) * f32(x_s * w_s))

    @staticmethod
    def backward(ctx, dy):
        xq, wq = ctx.saved_tensors
        x_s, w_s, grad_s = ctx.scales
        g = e5m2(bf16(dy) / grad_s)
        dx = bf16((g @ wq) * f32(grad_s * w_s))
        dw = (g.T @ xq) * f32(x_s * grad_s)
        return dx, dw, None, None, None


def fp8_head_scales(d_model):
    """Upstream's lm_head scales (train_gpt.py line 403), as float32 values."""
    return f32(d_model ** 0.5 / 448), f32(24 / 448), f32(1 / 448)


def masked_attention(q, k, v, scale, masks):
    """(B, T, H, D) in and out; masks (B, T, T) bool, True where a key is visible."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    scores = (q @ k.transpose(-2, -1)) * scale
    scores = scores.masked_fill(~masks[:, None], float("-inf"))
    return (scores.softmax(dim=-1) @ v).transpose(1, 2)


class Record26GPT:
    """Parameters in a dict name -> tensor, upstream's names. `steps`: the run's length
    (train.steps), for the window."""

    def __init__(self, model_cfg, params, steps):
        self.cfg, self.p, self.steps = model_cfg, params, steps

    def masks(self, tokens, step):
        c = self.cfg
        w = window_blocks(c, step, self.steps)
        long_masks, short_masks = [], []
        for row in tokens:
            docs = (row == c["doc_separator"]).cumsum(0)
            long_masks.append(upstream_block_mask(docs, c["attn_block_size"], w))
            short_masks.append(upstream_block_mask(docs, c["attn_block_size"], w // 2))  # upstream: W // 2, even 0
        return torch.stack(long_masks), torch.stack(short_masks)

    def logits(self, tokens, capture=None, step=0, fp8=False):
        """fp8: the head product through Fp8Head (training with model.fp8_head); else the plain
        head (evaluation, as upstream's CastedLinear outside self.training)."""
        c, p = self.cfg, self.p
        if capture is None:
            capture = lambda layer, point, x: None  # noqa: E731
        B, T = tokens.shape
        H, D, eps, L = c["n_head"], c["head_dim"], c["rmsnorm_eps"], c["n_layer"]
        long_bm, short_bm = self.masks(tokens, step)
        ve = [p[f"value_embeds.{j}.weight"][tokens] for j in range(3)]
        ve = [ve[0], ve[1], ve[2]] + [None] * (L - 6) + [ve[0], ve[1], ve[2]]
        s = p["scalars"]
        n = L // 2
        skip_weights = s[:n]
        lambdas = s[1 * L: 3 * L].view(-1, 2)
        sa_lambdas = s[3 * L: 5 * L].view(-1, 2)
        x = x0 = rms_norm(p["embed.weight"][tokens], eps)
        skips = []
        for i in range(L):
            b = f"blocks.{i}."
            if i >= n:
                x = x + skip_weights[i - n] * skips.pop()
            x = lambdas[i][0] * x + lambdas[i][1] * x0
            if i != 7:
                h = rms_norm(x, eps)
                capture(i, "attn_qkv", h.reshape(B * T, -1))
                q, k, v = F.linear(h, p[b + "attn.qkv_w"].flatten(end_dim=1)).view(B, T, 3 * H, D).chunk(3, dim=-2)
                q, k = rotary(rms_norm(q, eps), c["rotary_base"]), rotary(rms_norm(k, eps), c["rotary_base"])
                if ve[i] is not None:
                    v = sa_lambdas[i][0] * v + sa_lambdas[i][1] * ve[i].view_as(v)
                else:
                    v = sa_lambdas[i][0] * v
                masks = long_bm if c["window_pattern"][i] == "L" else short_bm
                y = masked_attention(q, k, v, c["attn_scale"], masks).reshape(B, T, H * D)
                capture(i, "attn_proj", y.reshape(B * T, -1))
                x = x + F.linear(y, p[b + "attn.c_proj.weight"])
            h = rms_norm(x, eps)
            capture(i, "mlp_fc", h.reshape(B * T, -1))
            f = F.linear(h, p[b + "mlp.c_fc.weight"]).relu().square()
            capture(i, "mlp_proj", f.reshape(B * T, -1))
            x = x + F.linear(f, p[b + "mlp.c_proj.weight"])
            if i < n:
                skips.append(x)
        h = rms_norm(x, eps)
        if fp8:
            x_s, w_s, grad_s = fp8_head_scales(c["d_model"])
            z = Fp8Head.apply(h.reshape(B * T, -1), p["lm_head.weight"], x_s, w_s, grad_s).view(B, T, -1)
        else:
            z = F.linear(h, p["lm_head.weight"])
        return softcap(z, c)

    def loss(self, tokens, targets, capture=None, step=0):
        """The training loss: the FP8 head when the config asks for it."""
        logits = self.logits(tokens, capture, step, fp8=self.cfg.get("fp8_head", False))
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
