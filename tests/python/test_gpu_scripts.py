"""The scripts a GPU session runs, checked as far as a machine without a GPU allows:
scripts/cuda_check.sh --dry-run (every step it would run, with the opt-in kernels, the
sanitizers, the kernel table, the PyTorch side-by-side and the gpu-mini comparison; what it
leaves in $OUT fits what the device tool brings back), scripts/gpu_compare.sh --dry-run (the
LR sweep's configs, each valid, with the scaled learning rate), and `speedrun bench --kernels`
refusing clearly without CUDA."""
import json
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import run_speedrun  # noqa: E402

SCRIPTS = speedrun_testing.SOURCE_DIR / "scripts"


def run_script(*args, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(["bash", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=300, env=full_env)


class CudaCheckDryRun(speedrun_testing.SpeedrunTestCase):
    def test_dry_run_lists_every_step_and_leaves_few_files(self):
        if "CUDA    yes" not in run_speedrun("info").stdout:
            self.skipTest("skipped: cuda_check.sh checks a CUDA build (this one has no CUDA tests to list)")
        out = self.tmp / "out"
        r = run_script(SCRIPTS / "cuda_check.sh", "--dry-run", "--compare",
                       env={"OUT": str(out), "BUILD_DIR": str(speedrun_testing.SPEEDRUN_BIN.parent)})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name in ("test-ops-attention", "test-flash-attention", "test-rmsnorm-fast", "dev_attention_flash",
                     "memcheck-flash-attention", "racecheck-flash-attention", "memcheck-rmsnorm-fast",
                     "test-ops-scale", "memcheck-masked-attention", "racecheck-masked-attention", "bench-record26",
                     "bench-record26-plain-head", "test-ops-fp8-head", "memcheck-fp8-head", "racecheck-fp8-head",
                     "test-gemm-epilogue-fused", "memcheck-gemm-epilogue-fused", "racecheck-gemm-epilogue-fused",
                     "bench-kernels", "bench-kernels-flash-fast", "bench-speedrun", "bench-torch-compiled",
                     "train-quickstart-bf16", "test-head-fused", "test-relu2-recompute", "memcheck-head-relu2",
                     "racecheck-head-relu2", "bench-kernels-head-relu2", "bench-speedrun-head-relu2",
                     "test-fuse-norms", "memcheck-fuse-norms", "racecheck-fuse-norms"):
            self.assertRegex(r.stdout, rf"would run {name} ", name)
        self.assertIn("SPEEDRUN_ATTENTION=flash", r.stdout)
        self.assertIn("SPEEDRUN_GEMM_EPILOGUE=fused", r.stdout)
        self.assertIn("SPEEDRUN_FUSE_NORMS=1", r.stdout)
        self.assertIn("--kernels", r.stdout)
        self.assertIn("gpu_compare", r.stdout)
        self.assertIn("speedrun_tests: ok", r.stdout)  # the binaries under test were found
        self.assertRegex(r.stdout, r"test-ops-attention: [1-9][0-9]* tests")  # the filters name real tests
        self.assertRegex(r.stdout, r"test-ops-fp8-head: [1-9][0-9]* tests")
        self.assertIn("compare configs/gpu-mini-muon.json", r.stdout)
        # The device tool brings back at most 8 files, at most 2 folders down: summary.txt
        # and the packed logs (the JSON results exist only after a real run).
        files = [p for p in out.rglob("*") if p.is_file()]
        self.assertLessEqual(len(files), 8, files)
        self.assertTrue((out / "summary.txt").exists())
        self.assertIn("would run bench-kernels", (out / "summary.txt").read_text())
        self.assertTrue((out / "cuda-check.tar.gz").exists())

    def test_unknown_argument_is_a_usage_error(self):
        r = run_script(SCRIPTS / "cuda_check.sh", "--bogus", env={"OUT": str(self.tmp / "o")})
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown argument --bogus", r.stderr)


class GpuCompareDryRun(speedrun_testing.SpeedrunTestCase):
    def test_sweep_configs_are_valid_and_scaled(self):
        d = self.tmp / "cmp"
        r = run_script(SCRIPTS / "gpu_compare.sh", "--dry-run", "--speedrun", speedrun_testing.SPEEDRUN_BIN, d)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        sweep = sorted((d / "sweep-configs").glob("*.json"))
        self.assertEqual(len(sweep), 12)
        for name in ("muon", "adamw", "newton-muon", "rmnp"):
            base = json.loads((speedrun_testing.SOURCE_DIR / "configs" / f"gpu-mini-{name}.json").read_text())
            for factor in ("0.5", "1", "2"):
                path = d / "sweep-configs" / f"gpu-mini-{name}-lr{factor}.json"
                cfg = json.loads(path.read_text())
                self.assertAlmostEqual(cfg["optimizers"][3]["lr"], base["optimizers"][3]["lr"] * float(factor))
                self.assertEqual(cfg["model"], base["model"])
            # One per optimizer is enough to show the copies validate (data globs made absolute).
            v = run_speedrun("validate-config", d / "sweep-configs" / f"gpu-mini-{name}-lr2.json")
            self.assertEqual(v.returncode, 0, v.stderr)
        self.assertIn("--device cuda --seeds 1", r.stdout)
        self.assertIn("--device cuda --seeds 2", r.stdout)
        self.assertFalse((d / "compare").exists())  # nothing ran

    def test_unknown_option_is_a_usage_error(self):
        r = run_script(SCRIPTS / "gpu_compare.sh", "--bogus")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option --bogus", r.stderr)


class KernelChoiceFromTheEnvironment(speedrun_testing.SpeedrunTestCase):
    def test_a_bad_attention_kernel_is_refused_before_a_run(self):
        if "CUDA    yes" not in run_speedrun("info").stdout:
            self.skipTest("skipped: a build without CUDA never reads SPEEDRUN_ATTENTION")
        config = speedrun_testing.SOURCE_DIR / "configs" / "quickstart.json"
        # validate-config reports device problems beside the device's plan (the config itself
        # is valid); a CUDA run stops there with exit 1 (train and bench plan before anything).
        r = run_speedrun("validate-config", config, env={"SPEEDRUN_ATTENTION": "flahs"})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("--device cuda: SPEEDRUN_ATTENTION=flahs: expected simt, tc, flash or nothing", r.stderr)
        self.assertNotIn("internal error", r.stderr)
        self.assertNotIn("device memory plan for --device cuda", r.stderr)
        for good in ("flash", "tc", "simt", ""):  # the negative control: accepted values pass
            r = run_speedrun("validate-config", config, env={"SPEEDRUN_ATTENTION": good})
            self.assertEqual(r.returncode, 0, f"{good!r}: {r.stderr}")
        # The same for the GEMM epilogue choice (read by the plan: fused adds bf16 bias copies).
        r = run_speedrun("validate-config", config, env={"SPEEDRUN_GEMM_EPILOGUE": "fsued"})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("--device cuda: SPEEDRUN_GEMM_EPILOGUE=fsued: expected fused, separate or nothing", r.stderr)
        self.assertNotIn("internal error", r.stderr)
        for good in ("fused", "separate", ""):
            r = run_speedrun("validate-config", config, env={"SPEEDRUN_GEMM_EPILOGUE": good})
            self.assertEqual(r.returncode, 0, f"{good!r}: {r.stderr}")
            self.assertNotIn("SPEEDRUN_GEMM_EPILOGUE", r.stderr)
        # With flash selected the plan counts its dQ workspace.
        r = run_speedrun("validate-config", config, env={"SPEEDRUN_ATTENTION": "flash"})
        self.assertIn("kernel scratch (embedding sort, flash attention dQ)", r.stdout + r.stderr)

    def test_bad_head_and_relu2_choices_are_refused_before_a_run(self):
        if "CUDA    yes" not in run_speedrun("info").stdout:
            self.skipTest("skipped: a build without CUDA never reads SPEEDRUN_HEAD or SPEEDRUN_RELU2")
        config = speedrun_testing.SOURCE_DIR / "configs" / "quickstart.json"
        for var, bad, expected in (("SPEEDRUN_HEAD", "fsued", "expected fused, legacy or nothing"),
                                   ("SPEEDRUN_RELU2", "recompte", "expected recompute, legacy or nothing"),
                                   ("SPEEDRUN_FUSE_NORMS", "yes", "expected 1, 0 or nothing")):
            r = run_speedrun("validate-config", config, env={var: bad})
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(f"--device cuda: {var}={bad}: {expected}", r.stderr)
            self.assertNotIn("internal error", r.stderr)
            self.assertNotIn("device memory plan for --device cuda", r.stderr)
        for var, good in (("SPEEDRUN_HEAD", "fused"), ("SPEEDRUN_HEAD", "legacy"), ("SPEEDRUN_HEAD", ""),
                          ("SPEEDRUN_RELU2", "recompute"), ("SPEEDRUN_RELU2", "legacy"),
                          ("SPEEDRUN_FUSE_NORMS", "1"), ("SPEEDRUN_FUSE_NORMS", "0"), ("SPEEDRUN_FUSE_NORMS", "")):
            r = run_speedrun("validate-config", config, env={var: good})  # the negative control
            self.assertEqual(r.returncode, 0, f"{var}={good!r}: {r.stderr}")
        # The plan's activations line names the choices in force (and is smaller with them).
        r = run_speedrun("validate-config", config, env={"SPEEDRUN_HEAD": "fused", "SPEEDRUN_RELU2": "recompute"})
        self.assertIn("fused head, relu^2 recomputed", r.stdout + r.stderr)


class WeightCopyChoiceFromTheEnvironment(speedrun_testing.SpeedrunTestCase):
    """SPEEDRUN_WEIGHT_COPIES / SPEEDRUN_CHECK_COPIES (model/weight_copies.h) are read when the
    model is made, on any device: a typo stops the run before training with exit 1."""

    def test_a_typo_is_refused_before_a_run(self):
        import random
        rng = random.Random(7)
        data = self.tmp / "data"
        data.mkdir()
        for split in ("train", "val"):
            speedrun_testing.write_shard(data / f"t_{split}_000000.bin", [rng.randrange(256) for _ in range(2048)])
        config = self.tmp / "tiny.json"
        config.write_text(json.dumps({
            "name": "copies",
            "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": 16, "vocab_size": 256,
                      "padded_vocab_size": 256},
            "data": {"train_glob": str(data / "t_train_*.bin"), "val_glob": str(data / "t_val_*.bin"),
                     "val_tokens": 32},
            "train": {"batch_tokens": 32, "micro_batch_seqs": 2, "steps": 2, "val_every": 2, "threads": 1,
                      "out_dir": str(self.tmp / "runs")},
            "optimizers": [{"type": "adamw", "params": ["*"], "lr": 0.01}],
        }))
        for var, value, expected in (("SPEEDRUN_WEIGHT_COPIES", "optimiser", "expected convert, optimizer or nothing"),
                                     ("SPEEDRUN_CHECK_COPIES", "yes", "expected 1, 0 or nothing")):
            r = run_speedrun("train", config, "--device", "cpu", "--no-progress", env={var: value})
            self.assertFailsWith(r, f"{var}={value}: {expected}")
            self.assertFalse(list((self.tmp / "runs").glob("*/metrics.jsonl")), "training started")
        # The negative control: the accepted values train (a CPU model has no copies to lend).
        r = run_speedrun("train", config, "--device", "cpu", "--no-progress",
                         env={"SPEEDRUN_WEIGHT_COPIES": "optimizer", "SPEEDRUN_CHECK_COPIES": "1"})
        self.assertSucceeds(r)


class BenchKernelsWithoutCuda(speedrun_testing.SpeedrunTestCase):
    def test_refused_clearly(self):
        if "CUDA devices:" in run_speedrun("info").stdout:
            self.skipTest("skipped: this machine has a CUDA device")
        config = speedrun_testing.SOURCE_DIR / "configs" / "quickstart.json"
        r = run_speedrun("bench", config, "--kernels")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr, r"bench --kernels(: no CUDA device| times the CUDA kernels and needs a build with "
                                   r"CUDA: this binary was built without CUDA)")
        self.assertNotIn("internal error", r.stderr)
        r = run_speedrun("bench", config, "--kernels", "--device", "cpu")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"(--device cpu is not possible|built without CUDA)")
        r = run_speedrun("bench", config, "--kernels", "--optimizers-only")
        self.assertEqual(r.returncode, 2)
        self.assertIn("excludes", r.stderr)


if __name__ == "__main__":
    speedrun_testing.main()
