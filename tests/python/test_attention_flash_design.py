"""Host-side checks of the index math of kernels/ops/attention_flash.cu, which cannot run
without a GPU (dev/cuda/attention_flash.cu checks the kernels themselves on one).

1. Fragments: the four ldmatrix address helpers are READ FROM THE .cu FILE (their return
   expressions are valid Python) and fed to a model of ldmatrix (PTX ISA: lane 8 i + r gives
   the address of row r of matrix i; register i of lane l holds row l / 4, elements
   2 (l % 4), +1 of matrix i, of its transpose with .trans) and of mma.m16n8k16's A/B/C
   fragments (as in kernels/attention_tc.cu's header, whose kernels passed on an H200). Each
   tile product of the kernels (S = Q K^T, O += P V, S^T = K Q^T, dV += P^T dO, dK += dS^T Q,
   dS^T through shared memory, dQ = dS K) must equal the matrix product; a deliberately wrong
   helper must not (negative control).
2. Banks: the padded pitches put the 8 rows of every ldmatrix matrix on distinct banks.
3. Tile loops: with the kernels' tile sizes and the causal mask's block classification (the
   same formulas as CausalMask::block), over several T (multiples of the tiles and not), every
   allowed (t, s) pair lies in exactly one visited block, skipped blocks hold no allowed pair,
   and "full" blocks hold no disallowed pair (so skipping the per-element test is exact).
Pure Python (numpy): no GPU, no build needed."""
import pathlib
import re
import unittest

import numpy as np

import speedrun_testing

KERNEL = speedrun_testing.SOURCE_DIR / "kernels" / "ops" / "attention_flash.cu"


def helper_exprs():
    """{name: python lambda (lane, r0, c0) -> (row, col)} from the .cu's ldsm_*_addr helpers."""
    src = KERNEL.read_text()
    out = {}
    pitch = 1 << 20
    for name in ("ldsm_a_addr", "ldsm_b_addr", "ldsm_bt_addr"):
        m = re.search(name + r"\(const bf16\* tile, int pitch, int r0, int c0, int lane\) \{\s*return ([^;]+);", src)
        if not m:
            raise AssertionError(f"{name} not found in {KERNEL}")
        expr = m.group(1)

        def fn(lane, r0, c0, expr=expr):
            v = eval(expr, {}, {"tile": 0, "pitch": pitch, "r0": r0, "c0": c0, "lane": lane})
            return v // pitch, v % pitch
        out[name] = fn
    if not re.search(r"ldsm_at_addr\([^)]*\) \{\s*return ldsm_b_addr\(tile, pitch, r0, c0, lane\);", src):
        raise AssertionError("ldsm_at_addr is expected to reuse ldsm_b_addr's lane pattern")
    out["ldsm_at_addr"] = out["ldsm_b_addr"]
    return out


def ldsm(tile, addr, r0, c0, trans):
    rows = [tile[r, c:c + 8] for r, c in (addr(l, r0, c0) for l in range(32))]
    regs = [[None] * 4 for _ in range(32)]
    for i in range(4):
        m = np.array(rows[8 * i:8 * i + 8])
        if trans:
            m = m.T
        for l in range(32):
            regs[l][i] = (m[l // 4, 2 * (l % 4)], m[l // 4, 2 * (l % 4) + 1])
    return regs


def mma(c, a, b0, b1):
    am, bm = np.zeros((16, 16)), np.zeros((16, 8))
    for l in range(32):
        g, t = l >> 2, l & 3
        am[g, 2 * t:2 * t + 2], am[g + 8, 2 * t:2 * t + 2] = a[l][0], a[l][1]
        am[g, 2 * t + 8:2 * t + 10], am[g + 8, 2 * t + 8:2 * t + 10] = a[l][2], a[l][3]
        bm[2 * t:2 * t + 2, g], bm[2 * t + 8:2 * t + 10, g] = b0[l], b1[l]
    d = am @ bm
    for l in range(32):
        g, t = l >> 2, l & 3
        c[l][0] += d[g, 2 * t]
        c[l][1] += d[g, 2 * t + 1]
        c[l][2] += d[g + 8, 2 * t]
        c[l][3] += d[g + 8, 2 * t + 1]


def zeros(n):
    return [[[0.0] * 4 for _ in range(32)] for _ in range(n)]


def to_matrix(cs):
    m = np.zeros((16, 8 * len(cs)))
    for j, c in enumerate(cs):
        for l in range(32):
            g, t = l >> 2, l & 3
            m[g, 8 * j + 2 * t:8 * j + 2 * t + 2] = c[l][0:2]
            m[g + 8, 8 * j + 2 * t:8 * j + 2 * t + 2] = c[l][2:4]
    return m


def a_from_c(cs, i):
    """The kernels' packing: k-step i of the next product takes n-blocks 2i and 2i + 1."""
    return [[(cs[2 * i][l][0], cs[2 * i][l][1]), (cs[2 * i][l][2], cs[2 * i][l][3]),
             (cs[2 * i + 1][l][0], cs[2 * i + 1][l][1]), (cs[2 * i + 1][l][2], cs[2 * i + 1][l][3])]
            for l in range(32)]


def product_ss(a_tile, a_addr, a_r0, b_tile, b_addr, n, k, trans_b=False, b_c0=0):
    """16 x n C fragments of A (rows a_r0.. of a row-major (m, k) tile) times B^T ((n, k) tile)."""
    acc = zeros(n // 8)
    for kk in range(0, k, 16):
        a = ldsm(a_tile, a_addr, a_r0, kk, False)
        for nj in range(n // 16):
            b = ldsm(b_tile, b_addr, 16 * nj, kk, trans_b)
            mma(acc[2 * nj], a, [x[0] for x in b], [x[1] for x in b])
            mma(acc[2 * nj + 1], a, [x[2] for x in b], [x[3] for x in b])
    return acc


def product_rs(p, v_tile, bt_addr, n, k):
    """16 x n += P (C fragments, k columns) times V (row-major (k, n) tile, ldmatrix.trans)."""
    acc = zeros(n // 8)
    for i in range(k // 16):
        a = a_from_c(p, i)
        for nd in range(n // 16):
            b = ldsm(v_tile, bt_addr, 16 * i, 16 * nd, True)
            mma(acc[2 * nd], a, [x[0] for x in b], [x[1] for x in b])
            mma(acc[2 * nd + 1], a, [x[2] for x in b], [x[3] for x in b])
    return acc


class Fragments(unittest.TestCase):
    D, KEYS = 32, 32

    def setUp(self):
        self.h = helper_exprs()
        self.rng = np.random.default_rng(1234)

    def forward(self, b_helper, bt_helper):
        h, rng = self.h, self.rng
        q, k, v = (rng.standard_normal((48, self.D)) for _ in range(3))
        s = product_ss(q, h["ldsm_a_addr"], 16, k, h[b_helper], self.KEYS, self.D)
        o = product_rs(s, v, h[bt_helper], self.D, self.KEYS)
        return (np.allclose(to_matrix(s), q[16:32] @ k[:self.KEYS].T),
                np.allclose(to_matrix(o), (q[16:32] @ k[:self.KEYS].T) @ v[:self.KEYS]))

    def test_forward_products(self):
        self.assertEqual(self.forward("ldsm_b_addr", "ldsm_bt_addr"), (True, True))

    def test_wrong_helper_is_caught(self):
        # Negative control: exchanging the (n, k) and the transposed (k, n) patterns breaks both.
        self.assertEqual(self.forward("ldsm_bt_addr", "ldsm_b_addr"), (False, False))

    def test_backward_products(self):
        h, rng, d = self.h, self.rng, self.D
        br, bn = 32, 32  # queries per tile, keys per block (two warps of 16 key rows)
        q, do = rng.standard_normal((br, d)), rng.standard_normal((br, d))
        k, v = rng.standard_normal((bn, d)), rng.standard_normal((bn, d))
        ps = br + 8
        dss = np.full((bn, ps), np.nan)
        for w in range(bn // 16):
            c0 = 16 * w
            st = product_ss(k, h["ldsm_a_addr"], c0, q, h["ldsm_b_addr"], br, d)      # S^T = K Q^T
            dpt = product_ss(v, h["ldsm_a_addr"], c0, do, h["ldsm_b_addr"], br, d)    # dP^T = V dO^T
            self.assertTrue(np.allclose(to_matrix(st), k[c0:c0 + 16] @ q.T))
            self.assertTrue(np.allclose(to_matrix(dpt), v[c0:c0 + 16] @ do.T))
            dv = product_rs(st, do, h["ldsm_bt_addr"], d, br)                         # dV += P^T dO
            dk = product_rs(dpt, q, h["ldsm_bt_addr"], d, br)                         # dK += dS^T Q
            self.assertTrue(np.allclose(to_matrix(dv), (k[c0:c0 + 16] @ q.T) @ do))
            self.assertTrue(np.allclose(to_matrix(dk), (v[c0:c0 + 16] @ do.T) @ q))
            # dS^T -> shared exactly as the kernel stores ads[i] (rows c0 + g (+8), cols 16 i + 2 t (+8)).
            for i in range(br // 16):
                a = a_from_c(dpt, i)
                for l in range(32):
                    g, t = l >> 2, l & 3
                    r, c = c0 + g, 16 * i + 2 * t
                    dss[r, c:c + 2], dss[r + 8, c:c + 2] = a[l][0], a[l][1]
                    dss[r, c + 8:c + 10], dss[r + 8, c + 8:c + 10] = a[l][2], a[l][3]
        ds_t = v @ do.T  # what the warps stored (dS^T stand-in: dP^T)
        self.assertTrue(np.allclose(dss[:, :br], ds_t))
        # dQ = dS K over all bn keys, for each (row group, column group) a warp may own.
        for r0 in range(0, br, 16):
            for c0 in range(0, d, 16):
                acc = zeros(2)
                for kk in range(0, bn, 16):
                    a = ldsm(dss, h["ldsm_at_addr"], kk, r0, True)
                    b = ldsm(k, h["ldsm_bt_addr"], kk, c0, True)
                    mma(acc[0], a, [x[0] for x in b], [x[1] for x in b])
                    mma(acc[1], a, [x[2] for x in b], [x[3] for x in b])
                self.assertTrue(np.allclose(to_matrix(acc), (ds_t.T @ k)[r0:r0 + 16, c0:c0 + 16]))


class Banks(unittest.TestCase):
    def test_padded_rows_hit_distinct_banks(self):
        src = KERNEL.read_text()
        self.assertIn("constexpr int kPad = 8;", src)
        for pitch in (128 + 8, 64 + 8):  # D + kPad (D = 128, 64; 64 + 8 is also the dS^T pitch)
            words = pitch // 2
            banks = [(r * words) % 32 for r in range(8)]  # each 16-byte row covers banks b .. b + 3
            self.assertEqual(sorted(banks), list(range(0, 32, 4)), pitch)
            self.assertEqual(pitch * 2 % 16, 0)  # 16-byte aligned rows (cp.async.cg, ldmatrix)


def causal_block(q0, q1, k0, k1):  # CausalMask::block; q1, k1 exclusive
    if k0 > q1 - 1:
        return "masked"
    if k1 - 1 <= q0:
        return "full"
    return "partial"


class TileLoops(unittest.TestCase):
    SEQS = (1, 63, 64, 77, 127, 128, 129, 200, 1000, 1024)

    def check(self, seq, row_tile, col_tile, rows_are_queries):
        """Blocks the kernel visits: for each row tile, col tiles from the mask's begin up to its
        end (causal: keys [0, q1) for a query tile, queries [k0, T) for a key tile), masked skipped."""
        cover = np.zeros((seq, seq), dtype=np.int32)  # [t, s]
        for r0 in range(0, seq, row_tile):
            r1 = min(r0 + row_tile, seq)
            if rows_are_queries:
                lo, end = 0, min(r1, seq)                      # key_begin(q0) / BN * BN, key_end(q1)
            else:
                lo, end = r0 // col_tile * col_tile, seq        # query_begin(k0) / BR * BR, query_end
            for c0 in range(lo, end, col_tile):
                c1 = min(c0 + col_tile, seq)
                q0_, q1_, k0_, k1_ = (r0, r1, c0, c1) if rows_are_queries else (c0, c1, r0, r1)
                kind = causal_block(q0_, q1_, k0_, k1_)
                t = np.arange(q0_, q1_)[:, None]
                s = np.arange(k0_, k1_)[None, :]
                allowed = s <= t
                if kind == "masked":
                    self.assertFalse(allowed.any(), (seq, q0_, k0_))
                    continue
                if kind == "full":
                    self.assertTrue(allowed.all(), (seq, q0_, k0_))
                cover[q0_:q1_, k0_:k1_] += allowed
        t = np.arange(seq)[:, None]
        s = np.arange(seq)[None, :]
        self.assertTrue(np.array_equal(cover, (s <= t).astype(np.int32)), seq)

    def test_forward_tiles(self):
        for seq in self.SEQS:
            self.check(seq, 128, 64, True)   # BM = 64 kFwdWM = 128 queries, kFwdBN = 64 keys

    def test_backward_tiles(self):
        for seq in self.SEQS:
            self.check(seq, 128, 64, False)  # kBwdBN = 128 keys, kBwdBR = 64 queries

    def test_tile_sizes_match_the_kernel(self):
        src = KERNEL.read_text()
        for line in ("constexpr int kFwdWM = 2;", "constexpr int kFwdBN = 64;", "constexpr int kBwdWarps = 8;",
                     "constexpr int kBwdBR = 64;", "constexpr int kBwdBN = 16 * kBwdWarps;"):
            self.assertIn(line, src)
        self.assertIn("static constexpr int BM = 64 * WM;", src)


if __name__ == "__main__":
    unittest.main()
