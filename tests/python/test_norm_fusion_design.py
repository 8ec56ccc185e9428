"""Host-side checks of the fused QK-norm + rotary kernels of kernels/ops/qk_norm_rotary.cu
(SPEEDRUN_FUSE_NORMS=1), which have never run on a GPU here (CudaOpsTest.QkNormRotaryMatchesCpu
checks the kernels themselves on one).

1. Ownership: with the kernel's block (kThreads, read from the .cu), one warp per head row and
   lane l owning the pairs (j, j + D/2) for j = l + 32 p, p < P = D / 64, every element of
   every head row is read and written by exactly one lane, for head_dim 64 and 128 and row
   counts below, at and above one block's worth; the grid-stride loop over rows visits each
   row once whatever the grid. The table index (row / heads) % seq names the row's position
   (rows are (b, t, h) in row-major order).
2. The emulation: the kernels' per-lane arithmetic in float32 numpy over bf16 inputs, with the
   intermediate rounding to bf16 (n = x r, u = rotary^T dout), equals the sequence of the
   unfused kernels' formulas (qk_norm then rotary; rotary^T then the QK-norm backward) computed
   the same way, and is within two bf16 roundings of a float64 reference. A lane mapping that
   pairs j with j + 1 instead of j + D/2 fails (negative control).
Pure Python (numpy): no GPU, no build needed."""
import re
import unittest

import numpy as np

import speedrun_testing

KERNEL = speedrun_testing.SOURCE_DIR / "kernels" / "ops" / "qk_norm_rotary.cu"


def bf16_round(x):
    """Round float32 values to bf16 (nearest even), returned as float32."""
    a = np.asarray(x, dtype=np.float32)
    b = a.reshape(-1).view(np.uint32).astype(np.uint64)
    b = (b + np.uint64(0x7FFF) + ((b >> np.uint64(16)) & np.uint64(1))) & np.uint64(0xFFFF0000)
    return b.astype(np.uint32).view(np.float32).reshape(a.shape)


def lane_pairs(head_dim, partner):
    """(lane, element) for every element the kernel's lanes touch in one head row."""
    half, pairs = head_dim // 2, head_dim // 64
    touched = []
    for lane in range(32):
        for p in range(pairs):
            j = lane + 32 * p
            touched += [(lane, j), (lane, partner(j, half))]
    return touched


def fused_forward(x, cos, sin, seq, heads, eps, partner=lambda j, half: j + half):
    """The forward kernel's arithmetic, lane by lane, float32 with bf16 stores."""
    rows, d = x.shape
    half = d // 2
    out = np.zeros_like(x)
    rstd = np.zeros(rows, np.float32)
    for row in range(rows):
        t = row // heads % seq
        ss = np.float32(np.sum(x[row].astype(np.float32) ** 2, dtype=np.float32))
        r = np.float32(1.0) / np.sqrt(ss / np.float32(d) + np.float32(eps), dtype=np.float32)
        rstd[row] = r
        for j in range(half):
            k = partner(j, half)
            n1, n2 = bf16_round(x[row, j] * r), bf16_round(x[row, k] * r)
            c, s = cos[t, j], sin[t, j]
            out[row, j] = bf16_round(n1 * c + n2 * s)
            out[row, k] = bf16_round(n1 * -s + n2 * c)
    return out, rstd


def fused_backward(dout, x, rstd, cos, sin, seq, heads):
    rows, d = x.shape
    half = d // 2
    dx = np.zeros_like(x)
    for row in range(rows):
        t = row // heads % seq
        c, s = cos[t], sin[t]
        d1, d2 = dout[row, :half], dout[row, half:]
        u = np.concatenate([bf16_round(d1 * c - d2 * s), bf16_round(d1 * s + d2 * c)])
        ux = np.float32(np.sum(u * x[row], dtype=np.float32))
        r = rstd[row]
        k = r * r * r * (ux / np.float32(d))
        dx[row] = bf16_round(r * u - k * x[row])
    return dx


class QkNormRotaryDesign(unittest.TestCase):
    def test_block_and_warp_layout(self):
        text = KERNEL.read_text()
        threads = int(re.search(r"constexpr int kThreads = (\d+);", text).group(1))
        self.assertEqual(threads % 32, 0)
        self.assertIn("lane + 32 * p", text)  # the mapping emulated here
        self.assertIn("(row / heads) % seq", text)

    def test_every_element_has_one_owner(self):
        for d in (64, 128):
            touched = lane_pairs(d, lambda j, half: j + half)
            self.assertEqual(sorted(e for _, e in touched), list(range(d)), d)
            bad = lane_pairs(d, lambda j, half: j + 1)  # negative control: not the rotary pairs
            self.assertNotEqual(sorted(e for _, e in bad), list(range(d)), d)
        # The grid-stride loop: rows row0 + k * warps for each warp cover every row once.
        for rows in (1, 7, 8, 9, 1000):
            for blocks in (1, 3, 128):
                warps = blocks * 8
                seen = [r for w in range(warps) for r in range(w, rows, warps)]
                self.assertEqual(sorted(seen), list(range(rows)))

    def test_emulation_matches_sequence_and_reference(self):
        rng = np.random.default_rng(14)
        B, T, H, D, eps = 2, 5, 3, 64, 1e-6
        rows = B * T * H
        x = bf16_round(rng.uniform(-1, 1, (rows, D)).astype(np.float32))
        dout = bf16_round(rng.uniform(-1, 1, (rows, D)).astype(np.float32))
        cos = rng.uniform(-1, 1, (T + 2, D // 2)).astype(np.float32)
        sin = rng.uniform(-1, 1, (T + 2, D // 2)).astype(np.float32)
        out, rstd = fused_forward(x, cos, sin, T, H, eps)
        # The sequence: qk_norm (stored in bf16), then rotary over the stored rows.
        pos = (np.arange(rows) // H) % T
        n = bf16_round(x * rstd[:, None])
        c, s = cos[pos], sin[pos]
        h = D // 2
        seq = np.concatenate([bf16_round(n[:, :h] * c + n[:, h:] * s), bf16_round(n[:, :h] * -s + n[:, h:] * c)], 1)
        np.testing.assert_array_equal(out, seq)
        # float64 reference: two bf16 roundings (2^-8 relative each, at most) on top.
        x64 = x.astype(np.float64)
        r64 = 1 / np.sqrt((x64 ** 2).mean(1) + eps)
        n64 = x64 * r64[:, None]
        ref = np.concatenate([n64[:, :h] * c + n64[:, h:] * s, -n64[:, :h] * s + n64[:, h:] * c], 1)
        scale = np.abs(ref) + np.abs(ref).max()
        self.assertTrue(np.all(np.abs(out - ref) <= 2 ** -7 * scale))
        bad, _ = fused_forward(x, cos, sin, T, H, eps, partner=lambda j, half: (j + 1) % (2 * half))
        self.assertFalse(np.array_equal(bad, seq))  # negative control
        # Backward: rotary^T (stored in bf16), then the QK-norm backward, as the sequence.
        dx = fused_backward(dout, x, rstd, cos, sin, T, H)
        u = np.concatenate([bf16_round(dout[:, :h] * c - dout[:, h:] * s),
                            bf16_round(dout[:, :h] * s + dout[:, h:] * c)], 1)
        ux = np.sum(u * x, 1, dtype=np.float32)
        k = rstd ** 3 * (ux / np.float32(D))
        np.testing.assert_allclose(dx, bf16_round(rstd[:, None] * u - k[:, None] * x), rtol=2 ** -7, atol=1e-6)
        self.assertFalse(np.array_equal(dx, dout))


if __name__ == "__main__":
    unittest.main()
