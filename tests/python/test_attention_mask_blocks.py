"""Host-side emulation of record #26's attention mask in the CUDA kernels
(kernels/ops/attention_mask.h, DocWindowMask), which cannot run without a GPU.

The mask is causal AND same document (document numbers nondecreasing along t, so a tile's
documents are the range [doc[first], doc[last]]) AND a sliding window of `bs`-token blocks
(t // bs - s // bs < W). The kernels classify each (query tile, key tile) block from four
document reads and the tile bounds: `masked` blocks are skipped without loading, `full` ones
run without a per-element test, `partial` ones test every element. This module transcribes
that classification and the kernels' tile walks into numpy and checks them against the dense
mask written from ../shared/specs/model-record26.md:

1. block() is exact: masked iff no pair of the block is visible, full iff every pair is
   (so skipping and the unmasked fast path are both exact), over random document layouts,
   windows of 0 (none), 1..n blocks and more, and T not a multiple of the tiles.
2. The walks of every kernel (flash forward 128 x 64 and backward 128 keys x 64 queries,
   tensor-core and CUDA-core 64 x 64) cover every visible pair exactly once.
3. The header still has the formulas transcribed here (a changed formula fails this test
   until the emulation is updated), and a deliberately wrong classification is caught
   (negative control). The C++ unit test OpsAttentionMask.CudaMaskClassifiesBlocksExactly
   runs the header's own code against the CPU's definition.
Pure Python (numpy): no GPU, no build needed."""
import unittest

import numpy as np

import speedrun_testing

HEADER = speedrun_testing.SOURCE_DIR / "kernels" / "ops" / "attention_mask.h"


def dense_mask(doc, bs, W):
    """[t, s] visible, from the spec: causal, same document, key block among the W nearest at or before."""
    T = len(doc)
    t = np.arange(T)[:, None]
    s = np.arange(T)[None, :]
    m = (s <= t) & (doc[s] == doc[t])
    if W > 0:
        m &= (t // bs - s // bs) < W
    return m


class Mask:
    """DocWindowMask, transcribed (positions are Python ints; C++ '/' on nonnegatives is '//')."""

    def __init__(self, doc, bs, W):
        self.doc, self.bs, self.W = doc, bs, W

    def key_begin(self, q0):
        if self.W <= 0:
            return 0
        return max(0, (q0 // self.bs - self.W + 1) * self.bs)

    def key_end(self, q1):
        return q1

    def query_begin(self, k0):
        return k0

    def query_end(self, k1, seq):
        if self.W <= 0:
            return seq
        return min(seq, ((k1 - 1) // self.bs + self.W) * self.bs)

    def block(self, q0, q1, k0, k1):
        doc, bs, W = self.doc, self.bs, self.W
        if k0 > q1 - 1:
            return "masked"
        if W > 0 and q0 // bs - (k1 - 1) // bs >= W:
            return "masked"
        if doc[k1 - 1] < doc[q0] or doc[k0] > doc[q1 - 1]:
            return "masked"
        causal_full = k1 - 1 <= q0
        window_full = W <= 0 or (q1 - 1) // bs - k0 // bs < W
        doc_full = doc[k0] == doc[q1 - 1]
        return "full" if causal_full and window_full and doc_full else "partial"


class WrongMask(Mask):
    """Negative control: treats the window as counting the query's own block twice."""

    def block(self, q0, q1, k0, k1):
        if self.W > 0 and q0 // self.bs - (k1 - 1) // self.bs >= self.W - 1:
            return "masked"
        return super().block(q0, q1, k0, k1)


def random_docs(rng, T, p):
    return np.cumsum(rng.random(T) < p).astype(np.int64)


def layouts(seed=7):
    rng = np.random.default_rng(seed)
    for trial in range(60):
        bs = (1, 8, 16, 128)[trial % 4]
        T = int(rng.integers(1, 700))
        p = (0.0, 0.005, 0.03, 0.2)[(trial // 4) % 4]
        doc = random_docs(rng, T, p)
        nb = (T + bs - 1) // bs
        for W in sorted({0, 1, 2, 3, max(1, nb // 2), nb, nb + 1}):
            yield doc, bs, W


def walk(mask, seq, row_tile, col_tile, rows_are_queries):
    """The blocks a kernel visits (as (q0, q1, k0, k1, kind)), masked ones skipped."""
    out = []
    for r0 in range(0, seq, row_tile):
        r1 = min(r0 + row_tile, seq)
        if rows_are_queries:
            lo, end = mask.key_begin(r0) // col_tile * col_tile, min(mask.key_end(r1), seq)
        else:
            lo, end = mask.query_begin(r0) // col_tile * col_tile, mask.query_end(r1, seq)
        for c0 in range(lo, end, col_tile):
            c1 = min(c0 + col_tile, seq)
            q0, q1, k0, k1 = (r0, r1, c0, c1) if rows_are_queries else (c0, c1, r0, r1)
            kind = mask.block(q0, q1, k0, k1)
            if kind != "masked":
                out.append((q0, q1, k0, k1, kind))
    return out


# (row tile, column tile, rows are queries) of each kernel's loops.
KERNEL_WALKS = {
    "flash forward": (128, 64, True),
    "flash backward": (128, 64, False),
    "tc/simt forward and dq": (64, 64, True),
    "tc/simt dk dv": (64, 64, False),
}


class Classification(unittest.TestCase):
    def check_exact(self, mask_type):
        counts = {"masked": 0, "partial": 0, "full": 0}
        for doc, bs, W in layouts():
            T = len(doc)
            dense = dense_mask(doc, bs, W)
            mask = mask_type(doc, bs, W)
            for tile in (16, 64, 128):
                for q0 in range(0, T, tile):
                    q1 = min(q0 + tile, T)
                    for k0 in range(0, T, tile):
                        k1 = min(k0 + tile, T)
                        blk = dense[q0:q1, k0:k1]
                        want = "masked" if not blk.any() else "full" if blk.all() else "partial"
                        got = mask.block(q0, q1, k0, k1)
                        if got != want:
                            return False, (T, bs, W, tile, q0, k0, got, want)
                        counts[want] += 1
        return True, counts

    def test_block_is_exact(self):
        ok, info = self.check_exact(Mask)
        self.assertTrue(ok, info)
        total = sum(info.values())
        for kind, n in info.items():  # not vacuous: every kind is common
            self.assertGreater(n, total // 20, (kind, info))

    def test_wrong_classification_is_caught(self):
        ok, _ = self.check_exact(WrongMask)
        self.assertFalse(ok)


class Walks(unittest.TestCase):
    def test_every_visible_pair_once(self):
        for doc, bs, W in layouts(seed=11):
            T = len(doc)
            dense = dense_mask(doc, bs, W)
            mask = Mask(doc, bs, W)
            for name, (row_tile, col_tile, rows_q) in KERNEL_WALKS.items():
                cover = np.zeros((T, T), dtype=np.int32)
                for q0, q1, k0, k1, kind in walk(mask, T, row_tile, col_tile, rows_q):
                    blk = dense[q0:q1, k0:k1]
                    if kind == "full":
                        self.assertTrue(blk.all())
                    cover[q0:q1, k0:k1] += blk  # the per-element test keeps exactly these
                self.assertTrue(np.array_equal(cover, dense.astype(np.int32)), (name, T, bs, W))

    def test_skipping_saves_work_at_the_records_shape(self):
        """At T = 49152 with the final window (14 blocks of 128) and ~1,000-token documents the
        flash forward visits a small fraction of the causal blocks: the skipping matters."""
        rng = np.random.default_rng(3)
        T, bs = 49152, 128
        doc = random_docs(rng, T, 1 / 1000)
        causal = len(walk(Mask(np.zeros(T, dtype=np.int64), bs, 0), T, 128, 64, True))
        masked = len(walk(Mask(doc, bs, 14), T, 128, 64, True))
        self.assertLess(masked, causal / 20)
        self.assertGreater(masked, T // 128)  # at least the diagonal blocks


class HeaderFormulas(unittest.TestCase):
    def test_header_has_the_transcribed_formulas(self):
        src = HEADER.read_text()
        for line in (
            "const I s = (q0 / block_size - window_blocks + 1) * block_size;",
            "const I e = ((k1 - 1) / block_size + window_blocks) * block_size;",
            "if (k0 > q1 - 1) return BlockKind::masked;",
            "if (window_blocks > 0 && q0 / block_size - (k1 - 1) / block_size >= window_blocks) return BlockKind::masked;",
            "if (doc && (doc[k1 - 1] < doc[q0] || doc[k0] > doc[q1 - 1])) return BlockKind::masked;",
            "const bool causal_full = k1 - 1 <= q0;",
            "const bool window_full = window_blocks <= 0 || (q1 - 1) / block_size - k0 / block_size < window_blocks;",
            "const bool doc_full = !doc || doc[k0] == doc[q1 - 1];",
            "if (window_blocks > 0 && t / block_size - s / block_size >= window_blocks) return false;",
        ):
            self.assertIn(line, src)


if __name__ == "__main__":
    unittest.main()
