"""Host-side checks of the one-pass bf16 cross-entropy of kernels/ops/cross_entropy.cu
(softcap_ce_bf16_fused_kernel, SPEEDRUN_HEAD=fused), which has never run on a GPU here
(CudaOpsTest.SoftcapCrossEntropyFusedMatchesCpu checks the kernel itself on one).

1. Ownership: with the kernel's block (kFusedThreads, read from the .cu) and chunk widths
   (kVec 8 when vocab % 8 == 0, else 1), the chunks thread t visits (t, t + blockDim, ...)
   cover every logit of a row exactly once, for vocabularies below, at and above a block's
   worth, so phases A, B and C (each over the thread's own chunks) see the whole row.
2. The max trick: the kernel takes m = cap(max z) instead of max cap(z). In fp32, over every
   finite bf16 logit, the caps (Track 3's algebraic cap, record #26's sigmoid cap) are
   non-decreasing up to rounding: cap(z) - cap(max z) never exceeds a few fp32 ulp of the cap,
   so every exp argument is <= ~1e-6 and the loss (invariant to m in exact arithmetic) is
   unchanged. A deliberately decreasing "cap" breaks the check (negative control).
3. The emulation: the three phases in fp32 numpy over bf16 logits against a float64
   reference of the CPU's formulas (ops/cpu/cross_entropy.h): losses and dz agree.
4. Shared memory: the widest row (kFusedMaxVocab, read from ops_cuda.h) fits sm_90's 227 KiB
   per block, and two blocks of the padded GPT-2 vocabulary (50,304) fit one SM (228 KiB,
   1 KiB reserved per block), as __launch_bounds__(kFusedThreads, 2) assumes.
Pure Python (numpy): no GPU, no build needed."""
import re
import unittest

import numpy as np

import speedrun_testing

KERNEL = speedrun_testing.SOURCE_DIR / "kernels" / "ops" / "cross_entropy.cu"
HEADER = speedrun_testing.SOURCE_DIR / "kernels" / "ops" / "ops_cuda.h"


def constant(path, name):
    m = re.search(r"constexpr (?:int|int64_t) " + name + r" = (\d+);", path.read_text())
    if not m:
        raise AssertionError(f"{name} not found in {path}")
    return int(m.group(1))


def bf16_round(x):
    """Round float32 values to bf16 (nearest even), returned as float32."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return b.astype(np.uint32).view(np.float32)


def all_finite_bf16():
    bits = (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32)
    return np.sort(bits[np.isfinite(bits)])


def algebraic(c):
    c = np.float32(c)
    return lambda z: (c * np.clip(z, -1e18, 1e18).astype(np.float32)) / np.sqrt(
        np.clip(z, -1e18, 1e18).astype(np.float32) ** 2 + c * c)


def sigmoid(c, den):
    c, den = np.float32(c), np.float32(den)
    return lambda z: c / (np.float32(1) + np.exp(-(z.astype(np.float32) / den)))


def owned(thread, block, chunks, vec):
    return [e for ch in range(thread, chunks, block) for e in range(ch * vec, ch * vec + vec)]


class FusedCrossEntropyDesign(unittest.TestCase):
    def setUp(self):
        self.block = constant(KERNEL, "kFusedThreads")
        self.max_vocab = constant(HEADER, "kFusedMaxVocab")
        self.rng = np.random.default_rng(14)

    def test_every_logit_is_owned_by_exactly_one_thread(self):
        for vocab in (1, 7, 10, 1000, 4096, 4104, 50301, 50304):
            vec = 8 if vocab % 8 == 0 else 1
            chunks = vocab // vec
            seen = np.zeros(vocab, dtype=np.int64)
            for t in range(self.block):
                for e in owned(t, self.block, chunks, vec):
                    seen[e] += 1
            self.assertTrue(np.all(seen == 1), f"vocab {vocab}: counts {np.unique(seen)}")

    def test_the_capped_max_is_the_cap_of_the_max(self):
        z = all_finite_bf16()
        with np.errstate(over="ignore"):
            for name, cap, c in (("algebraic 15", algebraic(15.0), 15.0),
                                 ("sigmoid 30", sigmoid(30.0, 7.5 * 27.7128), 30.0)):
                s = cap(z)
                # z sorted ascending: the largest excess of an earlier cap value over a later one.
                excess = np.max(np.maximum.accumulate(s) - s)
                self.assertLessEqual(excess, 4 * np.spacing(np.float32(c)), name)
            broken = -algebraic(15.0)(z)  # negative control: a decreasing "cap"
            self.assertGreater(np.max(np.maximum.accumulate(broken) - broken), 1.0)

    def emulate(self, z, target, cap, slope, grad_scale):
        """The kernel's three phases in fp32 (block reductions as plain fp32 sums)."""
        vocab = z.size
        vec = 8 if vocab % 8 == 0 else 1
        chunks = vocab // vec
        zmax = np.float32(-np.inf)
        for t in range(self.block):
            idx = owned(t, self.block, chunks, vec)
            if idx:
                zmax = max(zmax, np.max(z[idx]))
        m = cap(np.array([zmax]))[0]
        partial = [np.sum(np.exp(cap(z[owned(t, self.block, chunks, vec)]) - m), dtype=np.float32)
                   for t in range(self.block)]
        l = np.float32(np.sum(np.array(partial, dtype=np.float32), dtype=np.float32))
        loss = (m - cap(z[target:target + 1])[0]) + np.log(l)
        p = np.exp(cap(z) - m) / l
        p[target] -= 1
        return np.float32(loss), bf16_round(np.float32(grad_scale) * p * slope(z))

    def test_emulation_matches_the_cpu_formulas(self):
        c = 15.0
        cap = algebraic(c)
        slope = lambda z: (np.float32(c) / np.sqrt(z.astype(np.float32) ** 2 + np.float32(c * c))) ** 3
        for vocab in (10, 1000, 4104, 50304):
            z = bf16_round(self.rng.uniform(-40, 40, vocab).astype(np.float32))
            target = int(self.rng.integers(vocab))
            loss, dz = self.emulate(z, target, cap, slope, 0.5)
            z64 = z.astype(np.float64)
            s64 = c * z64 / np.sqrt(z64 ** 2 + c * c)
            m64 = s64.max()
            l64 = np.exp(s64 - m64).sum()
            want_loss = (m64 - s64[target]) + np.log(l64)
            want_dz = np.exp(s64 - m64) / l64
            want_dz[target] -= 1
            want_dz *= 0.5 * (c / np.sqrt(z64 ** 2 + c * c)) ** 3
            self.assertAlmostEqual(float(loss), want_loss, delta=1e-5 * (1 + abs(want_loss)), msg=f"vocab {vocab}")
            np.testing.assert_allclose(dz, want_dz, atol=2 ** -8 * 0.5, rtol=2 ** -8, err_msg=f"vocab {vocab}")

    def test_shared_memory_fits(self):
        static = 144  # reduce_scratch: 33 floats, 144 bytes as ptxas -v reports them
        self.assertLessEqual(2 * self.max_vocab + static, 227 * 1024)
        per_block = 2 * 50304 + static + 1024
        self.assertLessEqual(2 * per_block, 228 * 1024)


if __name__ == "__main__":
    unittest.main()
