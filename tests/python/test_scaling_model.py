"""scripts/scaling_model.py (docs/distributed.md's scaling model): its arithmetic on a case
small enough to work out by hand, and its command line."""
import importlib.util
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402

SCRIPT = speedrun_testing.SOURCE_DIR / "scripts" / "scaling_model.py"
spec = importlib.util.spec_from_file_location("scaling_model", SCRIPT)
sm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sm)


class TestArithmetic(unittest.TestCase):
    def tiny(self):
        # Backward order: a 4-element AdamW vector (final first, no backward FLOPs), then two
        # 6-element matrices, each taking half of the backward.
        params = [sm.Param("scalars", (4,), "adamw", 0.0), sm.Param("m1", (2, 3), "matrix", 1.0),
                  sm.Param("m2", (3, 2), "matrix", 1.0)]
        return sm.Model("tiny", params, tokens_per_rank=1, flop_per_token=1.0, matrix_optimizer_step_ms=0.6,
                        adamw_step_ms=0.2)

    def test_collectives(self):
        model = self.tiny()
        # One round of 2 matrices, (3, 2) first (shape order), padded to 6 elements each.
        self.assertEqual(sm.matrix_rounds(model.params, 2), [([2, 1], 2 * 6 * 4)])
        # The AdamW vector: 4 elements in 2 shards of 2.
        self.assertEqual(sm.adamw_buckets(model.params, 2, 0), [([0], 2 * 2 * 4)])
        # 3 ranks: the 4 elements pad to 3 shards of 2; the round pads to 3 blocks.
        self.assertEqual(sm.adamw_buckets(model.params, 3, 0), [([0], 3 * 2 * 4)])
        self.assertEqual(sm.matrix_rounds(model.params, 3), [([2, 1], 3 * 6 * 4)])
        self.assertEqual(sm.assign_buckets([4, 4, 4, 4], 8), [[0, 1], [2, 3]])
        self.assertEqual(sm.assign_buckets([2, 10, 2], 4), [[0], [1], [2]])
        self.assertAlmostEqual(sm.ring_seconds(48, 2, 16.0), 1.5)

    def test_overlap_simulation(self):
        # 16 bytes/ms. Forward 1 ms, backward 2 ms: the vector is final at 1 ms, m1 at 2 ms,
        # m2 at 3 ms. Vector: 8 bytes per direction -> 0.5 ms, 1.0 -> 1.5, hidden. Round:
        # 24 bytes -> 1.5 ms, from 3.0 (its last matrix) to 4.5: 1.5 ms exposed.
        r = sm.predict(self.tiny(), 2, 16000.0, bucket_bytes=0, fwd_bwd_ms=3.0)
        self.assertEqual(r["collectives"], 2)
        self.assertAlmostEqual(r["bytes_per_rank_per_step"], 2 * (8 + 24))
        self.assertAlmostEqual(r["reduce_scatter_ms"], 2.0)
        self.assertAlmostEqual(r["exposed_reduce_scatter_ms"], 1.5)
        self.assertAlmostEqual(r["hidden_ms"], 0.5)
        self.assertAlmostEqual(r["all_gather_ms"], 2.0)
        self.assertAlmostEqual(r["optimizer_ms"], 0.4)
        # In the step: 0.2 ms of update each. The vector's gather 0.2 -> 0.7, the round's
        # (after its update at 0.4, the link busy until 0.7) 0.7 -> 2.2: 1.8 ms after the
        # last update ends at 0.4.
        self.assertAlmostEqual(r["exposed_all_gather_ms"], 1.8)
        self.assertAlmostEqual(r["step_ms_overlap"], 3.0 + 1.5 + 0.4 + 1.8)
        self.assertAlmostEqual(r["step_ms_no_overlap"], 3.0 + 2.0 + 2.0 + 0.4)

    def test_track3_bytes(self):
        # Every Track 3 parameter reduce-scattered and all-gathered once in f32 at 8 ranks:
        # 2 x 7/8 x 4 bytes x the parameter count (no padding: 9 full rounds of equal
        # matrices; AdamW shards pad by < 8 elements per bucket).
        model = sm.track3()
        n = sum(p.numel for p in model.params)
        # embed + head (50304 x 768 each) + head bias 50304 + 12 layers x (4 x (768^2 + 768) +
        # 2 x 3072 x 768 + 3072 + 768 + 2 x 768) + 2 x 768 final gains (src/model/param_layout.cpp).
        self.assertEqual(n, 2 * 50304 * 768 + 50304 + 12 * (4 * (768 * 768 + 768) + 2 * 3072 * 768 + 3072 + 768 + 1536)
                         + 1536)
        self.assertEqual(n, 162354816)
        r = sm.predict(model, 8, sm.LINKS["nvlink"])
        self.assertAlmostEqual(r["bytes_per_rank_per_step"], 2 * 7 / 8 * 4 * n, delta=2 * 4 * 8 * r["collectives"])
        self.assertEqual(len(sm.matrix_rounds(model.params, 8)), 9)
        self.assertLessEqual(r["step_ms_overlap"], r["step_ms_no_overlap"])


class TestCommandLine(unittest.TestCase):
    def test_markdown_table(self):
        r = subprocess.run([sys.executable, str(SCRIPT), "--markdown"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [l for l in r.stdout.splitlines() if l.startswith("| track3") or l.startswith("| record26")]
        self.assertEqual(len(rows), 4, r.stdout)

    def test_bad_argument_is_a_usage_error(self):
        r = subprocess.run([sys.executable, str(SCRIPT), "--ranks", "0"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--ranks", r.stderr)


if __name__ == "__main__":
    speedrun_testing.main()
