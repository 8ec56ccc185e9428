"""scripts/bench_torch_gpu.py (the PyTorch side of the GPU side-by-side) on the CPU with a
tiny shape, and scripts/gpu_ratio.py on its output: both run, write positive figures, and
refuse bad input. The GPU figures themselves come only from a GPU session (cuda_check.sh)."""
import json
import subprocess
import sys
import tempfile
import pathlib
import unittest

import speedrun_testing

SCRIPT = speedrun_testing.SOURCE_DIR / "scripts" / "bench_torch_gpu.py"
RATIO = speedrun_testing.SOURCE_DIR / "scripts" / "gpu_ratio.py"
TINY = ["--device", "cpu", "--layers", "2", "--dim", "64", "--heads", "2", "--head-dim", "32", "--seq", "64",
        "--batch", "2", "--vocab", "256", "--steps", "2", "--warmup", "1", "--threads", "1", "--step-steps", "1",
        "--micro-batches", "2"]


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=600)


def load_script_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_torch_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TorchMuonOfTheSideBySide(unittest.TestCase):
    def test_newton_schulz_orthogonalizes(self):
        # The whole-step timing's Muon must do Muon's work: its update has every singular value
        # near 1 (cubic, 12 iterations, converges; quintic's coefficients trade that for speed
        # and leave them in about [0.7, 1.2]), from inputs whose singular values spread widely.
        import torch
        b = load_script_module()
        torch.manual_seed(1234)
        for shape in ((64, 32), (32, 64), (96, 48)):  # not square: no near-zero singular value
            g = torch.randn(*shape)
            s_in = torch.linalg.svdvals(g)
            self.assertLess(float(s_in.min() / s_in.max()), 0.5)  # the check is not vacuous
            for preset, lo, hi in (("cubic", 0.97, 1.03), ("quintic", 0.5, 1.3)):
                out = b.newton_schulz(g, preset).float()
                self.assertEqual(tuple(out.shape), shape)
                s = torch.linalg.svdvals(out)
                self.assertGreater(float(s.min()), lo, (shape, preset))
                self.assertLess(float(s.max()), hi, (shape, preset))


class BenchTorchGpuOnCpu(unittest.TestCase):
    def test_tiny_run_writes_positive_figures(self):
        with tempfile.TemporaryDirectory() as d:
            out = pathlib.Path(d) / "torch.json"
            for dtype in ("bf16", "f32"):
                r = run(SCRIPT, *TINY, "--dtype", dtype, "--json", out)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("ms per micro-batch", r.stdout)
                j = json.loads(out.read_text())
                for key in ("micro_batch_ms", "tokens_per_s", "flops_per_token", "tflops", "loss"):
                    self.assertGreater(j[key], 0, key)
                self.assertEqual(j["micro_batch_tokens"], 2 * 64)
                self.assertEqual(len(j["micro_batch_ms_all"]), 2)
                # A whole step (2 micro-batches + Muon/AdamW) takes longer than one micro-batch.
                self.assertGreater(j["step_ms"], min(j["micro_batch_ms_all"]))
                self.assertEqual(len(j["step_ms_all"]), 1)
                self.assertIn("whole step:", r.stdout)
                # The attention kernel is named (this CPU torch may have no SDPA at all).
                names = set(j["attention_backend"].split(" ")[0].split("+"))
                self.assertTrue(names <= {"flash", "efficient", "math", "cudnn", "explicit"}, j["attention_backend"])
                self.assertIn("attention backend (profiler):", r.stdout)
                # speedrun's count for this shape: 6 (L (4 d hd + 2 d f) + d V) + 6 L T hd.
                self.assertEqual(j["flops_per_token"], 6 * (2 * (4 * 64 * 64 + 2 * 64 * 256) + 64 * 256) +
                                 6 * 2 * 64 * 64)

    def test_bad_arguments_fail(self):
        r = run(SCRIPT, *TINY, "--layers", "0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--layers must be >= 1", r.stderr)
        r = run(SCRIPT, *TINY, "--micro-batches", "0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--micro-batches >= 1", r.stderr)
        r = run(SCRIPT, *TINY, "--head-dim", "30")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("multiple of 4", r.stderr)

    def test_ratio_of_two_runs(self):
        with tempfile.TemporaryDirectory() as d:
            theirs = pathlib.Path(d) / "theirs.json"
            self.assertEqual(run(SCRIPT, *TINY, "--json", theirs).returncode, 0)
            j = json.loads(theirs.read_text())
            ours = pathlib.Path(d) / "ours.json"
            ours.write_text(json.dumps({**j, "micro_batch_ms": j["micro_batch_ms"] / 2, "activation_dtype": "bf16",
                                        "mfu": 0.5}))
            r = run(RATIO, ours, theirs, "--json", pathlib.Path(d) / "ratio.json")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("ratio ours / theirs (ms): 0.500", r.stdout)
            self.assertIn("whole step (2 micro-batches + optimizers)", r.stdout)
            self.assertIn("ratio 1.000", r.stdout)  # the same step_ms on both sides
            ours.write_text(json.dumps({**j, "micro_batches_per_step": 8}))
            r = run(RATIO, ours, theirs)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("different steps", r.stderr)
            ours.write_text(json.dumps({**j, "micro_batch_ms": j["micro_batch_ms"] / 2, "activation_dtype": "bf16",
                                        "mfu": 0.5}))
            r = run(RATIO, ours, theirs, "--json", pathlib.Path(d) / "ratio.json")
            self.assertAlmostEqual(json.loads((pathlib.Path(d) / "ratio.json").read_text())["ratio"], 0.5)
            ours.write_text(json.dumps({**j, "micro_batch_tokens": 7}))
            r = run(RATIO, ours, theirs)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("different micro-batches", r.stderr)


if __name__ == "__main__":
    unittest.main()
