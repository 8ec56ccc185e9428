"""PyTorch interop of our checkpoints (issue 15, deliverable 7).

1. A checkpoint of fresh random weights is read with numpy alone (scripts/
   safetensors_numpy.py parses the header by hand; no `safetensors` package), loaded into
   the float64 reference model of the other reference tests (track3_torch.Track3GPT), and
   its logits reproduce the ones `speedrun sample --logits-out` drew from (our fp32
   KV-cache decoder) at every generated position.
2. scripts/convert_to_pytorch.py turns the checkpoint into a state dict for upstream's
   Track 3 `GPT` (train_gpt_simple.py at 5abb30686e51, see the script), which loads with
   strict=True into UpstreamGPT below, a class written from that file's parameter names,
   shapes and forward (computed in float64 here; upstream runs bf16 with fp32 rotary and
   the default eps of F.rms_norm, 2^-23 there), and gives the same logits.

Tolerance: ours are fp32, the references float64: the relative L2 error of each logit row
is bounded by 2e-5, the bound test_reference_torch.py justifies for the same forward (fp32
unit roundoff 6e-8 through O(10) dependent ops; a wrong layout or constant gives errors of
order 1, as the negative controls show). The two float64 references agree to 1e-5 in each
logit: they differ only in the rotary frequencies, upstream's fp32 buffer here and float64
in track3_torch (a relative 6e-8 per frequency, angles off by <= 24 * 6e-8 rad)."""
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import run_speedrun  # noqa: E402

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as e:  # pragma: no cover
    print(f"skipped: numpy/torch not available ({e}); run scripts/setup.sh", file=sys.stderr)
    sys.exit(77)

import checkpoint_files  # noqa: E402
import track3_torch  # noqa: E402

safetensors_numpy = checkpoint_files.safetensors_numpy
CONVERTER = speedrun_testing.SOURCE_DIR / "scripts" / "convert_to_pytorch.py"
ROW_TOL = 2e-5


# ---- upstream's Track 3 model, from train_gpt_simple.py @ 5abb30686e51 (names and shapes exact) ----
def rms_norm(x, eps, weight=None):
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y if weight is None else y * weight


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.gains = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.eps, self.gains.type_as(x))


class Linear(nn.Linear):
    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features, bias=True)

    def forward(self, x):
        return F.linear(x, self.weight.type_as(x), self.bias.type_as(x))


class Rotary(nn.Module):
    def __init__(self, dim):
        super().__init__()
        angular_freq = (1 / 1024) ** torch.linspace(0, 1, steps=dim // 4, dtype=torch.float32)
        self.register_buffer("angular_freq", torch.cat([angular_freq, angular_freq.new_zeros(dim // 4)]))

    def forward(self, x_BTHD):
        pos = torch.arange(x_BTHD.size(1), dtype=x_BTHD.dtype)
        theta = torch.outer(pos, self.angular_freq.to(x_BTHD.dtype))[None, :, None, :]
        cos, sin = theta.cos(), theta.sin()
        x1, x2 = x_BTHD.chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), 3)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, eps, head_dim=128):
        super().__init__()
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        hdim = self.num_heads * self.head_dim
        self.q, self.k, self.v = Linear(dim, hdim), Linear(dim, hdim), Linear(dim, hdim)
        self.proj = Linear(hdim, dim)
        self.rotary = Rotary(head_dim)
        self.eps = eps

    def forward(self, x):
        B, T = x.size(0), x.size(1)
        q = self.q(x).view(B, T, self.num_heads, self.head_dim)
        k = self.k(x).view(B, T, self.num_heads, self.head_dim)
        v = self.v(x).view(B, T, self.num_heads, self.head_dim)
        q, k = rms_norm(q, self.eps), rms_norm(k, self.eps)
        q, k = self.rotary(q), self.rotary(k)
        y = track3_torch.causal_attention(q, k, v, 0.12)  # scaled_dot_product_attention(scale=0.12, is_causal)
        return self.proj(y.contiguous().view(B, T, self.num_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc, self.proj = Linear(dim, 4 * dim), Linear(4 * dim, dim)

    def forward(self, x):
        return self.proj(self.fc(x).relu().square())


class Block(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.attn, self.mlp = CausalSelfAttention(dim, eps), MLP(dim)
        self.norm1, self.norm2 = RMSNorm(dim, eps), RMSNorm(dim, eps)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UpstreamGPT(nn.Module):
    def __init__(self, vocab_size, num_layers, model_dim, eps=2.0 ** -23):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, model_dim)
        self.blocks = nn.ModuleList([Block(model_dim, eps) for _ in range(num_layers)])
        self.proj = Linear(model_dim, vocab_size)
        self.norm1, self.norm2 = RMSNorm(model_dim, eps), RMSNorm(model_dim, eps)

    def logits(self, inputs):
        """upstream's forward up to the capped logits (it returns the summed loss)."""
        x = self.norm1(self.embed(inputs))
        for block in self.blocks:
            x = block(x)
        logits = self.proj(self.norm2(x))
        return 15 * logits * (logits.square() + 15 ** 2).rsqrt()


def row_errors(ours, ref):
    return np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1)


class TestPytorchInterop(speedrun_testing.SpeedrunTestCase):
    def setUp(self):
        super().setUp()
        self.seed = checkpoint_files.test_seed()
        print(f"seed {self.seed} (SPEEDRUN_TEST_SEED replays it)")
        self.rng = np.random.default_rng(self.seed)

    def checkpoint(self, **model):
        """Random weights for a small model of upstream's shape (head_dim 128, one head per
        128 of width) unless `model` says otherwise; returns (path, resolved config)."""
        settings = {"n_layer": 2, "d_model": 128, "n_head": 1, "head_dim": 128, "seq_len": 24}
        settings.update(model)
        cfg = {"name": "interop", "model": settings,
               "data": {"train_glob": "/x/t_*.bin", "val_glob": "/x/v_*.bin", "val_tokens": 48},
               "train": {"batch_tokens": 48, "micro_batch_seqs": 2, "steps": 1},
               "optimizers": [{"type": "adamw", "params": ["*"], "lr": 0.01}]}
        (self.tmp / "cfg.json").write_text(json.dumps(cfg))
        r = run_speedrun("validate-config", self.tmp / "cfg.json")
        self.assertSucceeds(r)
        resolved = json.loads(r.stdout)
        params = checkpoint_files.random_params(resolved["model"], self.rng)
        path = checkpoint_files.write_checkpoint(self.tmp / "run" / "checkpoints" / "step_000007.safetensors",
                                                 resolved, params, 7)
        return path, resolved

    def our_logits(self, path, tokens=12):
        """Greedy sampling from our binary: the context ids and the logits each token was drawn from."""
        out = self.tmp / "logits.npy"
        r = run_speedrun("sample", path, "--prompt", "The meaning of life is", "--tokens", tokens, "--temperature",
                         "0", "--json", "--device", "cpu", "--logits-out", out)
        self.assertSucceeds(r)
        s = json.loads(r.stdout)
        context = s["prompt_tokens"] + s["tokens"][:-1]
        return np.array(context), np.load(out), len(s["prompt_tokens"])

    def test_numpy_reader_and_float64_reference_reproduce_our_logits(self):
        path, resolved = self.checkpoint()
        tensors, meta = safetensors_numpy.read_safetensors(path)
        self.assertEqual(meta["speedrun.format"], "speedrun-checkpoint/1")
        self.assertEqual(int(meta["speedrun.step"]), 7)
        model_cfg = json.loads(meta["speedrun.config"])["model"]
        self.assertEqual(model_cfg, resolved["model"])
        # The reader checks what it reads: a flipped byte fails the CRC, a cut file the layout.
        data = path.read_bytes()
        flipped, cut = self.tmp / "flipped.safetensors", self.tmp / "cut.safetensors"
        flipped.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
        cut.write_bytes(data[:len(data) // 2])
        with self.assertRaisesRegex(safetensors_numpy.SafetensorsError, f"{flipped}: tensor norm2.gains is corrupted"):
            safetensors_numpy.read_safetensors(flipped)
        with self.assertRaisesRegex(safetensors_numpy.SafetensorsError, f"{cut}: not a complete safetensors file"):
            safetensors_numpy.read_safetensors(cut)
        context, ours, prompt_len = self.our_logits(path)
        params = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in tensors.items()}
        ref = track3_torch.Track3GPT(model_cfg, params).logits(torch.from_numpy(context)[None]).squeeze(0).numpy()
        rows = ref[prompt_len - 1:]
        self.assertEqual(rows.shape, ours.shape)
        err = row_errors(ours, rows)
        print(f"our fp32 KV-cache logits vs the float64 reference: worst relative row error {err.max():.3g} "
              f"(tolerance {ROW_TOL:g}); |logit| up to {np.abs(rows).max():.2f}")
        self.assertLess(err.max(), ROW_TOL)
        self.assertGreater(np.abs(rows).max(), 3.0)  # logits that use the cap's range: not a vacuous match
        # Negative control: a layout error (q's weight read transposed) is far outside the tolerance.
        wrong = dict(params)
        wrong["blocks.0.attn.q.weight"] = params["blocks.0.attn.q.weight"].T.contiguous()
        bad = track3_torch.Track3GPT(model_cfg, wrong).logits(torch.from_numpy(context)[None]).squeeze(0).numpy()
        self.assertGreater(row_errors(ours, bad[prompt_len - 1:]).max(), 100 * ROW_TOL)

    def test_converted_state_dict_loads_into_upstreams_class(self):
        path, resolved = self.checkpoint()
        out = self.tmp / "model.pt"
        r = subprocess.run([sys.executable, CONVERTER, self.tmp / "run", out], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("step 7", r.stdout)
        sd = torch.load(out)
        m = resolved["model"]
        model = UpstreamGPT(m["padded_vocab_size"], m["n_layer"], m["d_model"])
        self.assertEqual(list(sd.keys()), list(model.state_dict().keys()))  # upstream's names and order
        model.load_state_dict(sd, strict=True)
        model = model.double()
        context, ours, prompt_len = self.our_logits(path)
        with torch.no_grad():
            up = model.logits(torch.from_numpy(context)[None]).squeeze(0).numpy()[prompt_len - 1:]
        err = row_errors(ours, up)
        print(f"our logits vs upstream's class (float64) from the converted state dict: worst {err.max():.3g}")
        self.assertLess(err.max(), ROW_TOL)
        tensors, _ = safetensors_numpy.read_safetensors(path)
        params = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in tensors.items()}
        ref = track3_torch.Track3GPT(m, params).logits(torch.from_numpy(context)[None]).squeeze(0).numpy()
        gap = np.abs(up - ref[prompt_len - 1:]).max()
        print(f"upstream's class vs track3_torch, both float64: largest logit difference {gap:.3g}")
        self.assertLess(gap, 1e-5)

    def test_converter_refusals(self):
        path, _ = self.checkpoint(n_layer=1, d_model=32, n_head=2, head_dim=16)
        out = self.tmp / "m.pt"

        def convert(*args):
            return subprocess.run([sys.executable, CONVERTER, *map(str, args)], capture_output=True, text=True)

        r = convert(path, out)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("model.head_dim = 16 (upstream: 128)", r.stderr)
        self.assertIn(str(path), r.stderr)
        self.assertFalse(out.exists())
        r = convert(path, out, "--allow-mismatch")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("warning: model.head_dim = 16", r.stderr)
        before = out.read_bytes()
        r = convert(path, out, "--allow-mismatch")
        self.assertEqual(r.returncode, 1)
        self.assertIn("exists; pass --overwrite", r.stderr)
        self.assertEqual(out.read_bytes(), before)  # a user's file is not replaced unasked
        # A write that fails leaves the old file and no temporary.
        r = subprocess.run([sys.executable, CONVERTER, path, out, "--allow-mismatch", "--overwrite"],
                           capture_output=True, text=True, env=os.environ | speedrun_testing.fault_env("m.pt"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"cannot write {out}", r.stderr)
        self.assertEqual(out.read_bytes(), before)
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir() if p.name.startswith(".m.pt")), [])
        broken = self.tmp / "broken.safetensors"
        broken.write_bytes(path.read_bytes()[:-10])
        r = convert(broken, self.tmp / "b.pt")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{broken}: not a complete safetensors file", r.stderr)
        r = convert(self.tmp / "nothing", self.tmp / "b.pt")
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not exist", r.stderr)
        r = convert(path)
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    speedrun_testing.main()
