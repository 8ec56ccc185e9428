"""The command line: usage errors, info, validate-config, and train on tiny data —
including every kind of bad input, each of which must give a clear message naming
the file/key/value and a non-zero exit, never a crash."""
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import run_speedrun, write_shard  # noqa: E402

UPSTREAM_VAL_LINE = re.compile(r"^step:(\d+)/(\d+) val_loss:(\d+\.\d{5}) train_time:(\d+\.\d{3})s step_avg:(nan|\d+\.\d{2})ms$")


def tiny_config(train_glob, val_glob, **train):
    cfg = {
        "name": "tiny",
        "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": 16},
        "data": {"train_glob": train_glob, "val_glob": val_glob, "val_tokens": 64},
        "train": {"batch_tokens": 64, "micro_batch_seqs": 2, "steps": 6, "val_every": 3, "threads": 2},
        "optimizers": [
            {"type": "adamw", "params": ["embed.weight", "proj.weight", "*.bias", "*.gains"], "lr": 0.01,
             "betas": [0.8, 0.95], "eps": 1e-10},
            {"type": "muon", "params": ["blocks.*.weight"], "lr": 0.02},
        ],
    }
    cfg["train"].update(train)
    return cfg


class CliTestCase(speedrun_testing.SpeedrunTestCase):
    def write_config(self, cfg, name="run.json"):
        path = self.tmp / name
        path.write_text(json.dumps(cfg))
        return path

    def make_data(self, train_tokens=2000, val_tokens=200):
        rng = random.Random()
        (self.tmp / "data").mkdir(exist_ok=True)
        write_shard(self.tmp / "data" / "t_train_000001.bin", [rng.randrange(50257) for _ in range(train_tokens)])
        write_shard(self.tmp / "data" / "t_val_000000.bin", [rng.randrange(50257) for _ in range(val_tokens)])
        return "data/t_train_*.bin", "data/t_val_*.bin"

    def tiny(self, **train):
        train.setdefault("out_dir", str(self.tmp / "runs"))
        return self.write_config(tiny_config(*self.make_data(), **train))


class TestUsage(CliTestCase):
    def test_unknown_flag_is_usage_error(self):
        r = run_speedrun("--bogus")
        self.assertFailsWith(r, "--bogus", "Usage:", code=2)
        r = run_speedrun("info", "--bogus")
        self.assertFailsWith(r, "--bogus", "Usage:", code=2)
        r = run_speedrun("train")
        self.assertFailsWith(r, "config", code=2)

    def test_no_subcommand(self):
        self.assertFailsWith(run_speedrun(), "subcommand", code=2)

    def test_every_command_has_help(self):
        for cmd in ("train", "bench", "compare", "tokenize", "info", "validate-config"):
            r = run_speedrun(cmd, "--help")
            self.assertSucceeds(r)
            self.assertIn("Usage", r.stdout)

    def test_info(self):
        r = run_speedrun("info")
        self.assertSucceeds(r)
        for word in ("CUDA", "NCCL", "MPI", "BLAS", "OpenMP"):
            self.assertIn(word, r.stdout)
        self.assertTrue("no CUDA device:" in r.stdout or "CUDA devices:" in r.stdout, r.stdout)


class TestValidateConfig(CliTestCase):
    def test_shipped_configs_are_valid(self):
        for cfg in sorted((speedrun_testing.SOURCE_DIR / "configs").glob("*.json")):
            r = run_speedrun("validate-config", cfg)
            self.assertSucceeds(r)
            resolved = json.loads(r.stdout)
            self.assertIn("optimizers", resolved)

    def test_track3_muon_is_the_tuned_baseline(self):
        r = run_speedrun("validate-config", speedrun_testing.SOURCE_DIR / "configs" / "track3-muon.json")
        self.assertSucceeds(r)
        c = json.loads(r.stdout)
        self.assertEqual((c["model"]["n_layer"], c["model"]["d_model"], c["model"]["head_dim"]), (12, 768, 128))
        self.assertEqual((c["train"]["batch_tokens"], c["train"]["steps"]), (524288, 3250))
        lrs = sorted(o["lr"] for o in c["optimizers"])
        self.assertEqual(lrs, [0.004, 0.015, 0.025, 0.7])
        muon = [o for o in c["optimizers"] if o["type"] == "muon"][0]
        self.assertEqual((muon["weight_decay"], muon["momentum"], muon["ns_preset"]), (0.05, 0.95, "cubic"))

    def test_shipped_configs_use_upstreams_rmsnorm_eps(self):
        # F.rms_norm without eps on bf16 computes in fp32 with eps = fp32's machine epsilon.
        for cfg in sorted((speedrun_testing.SOURCE_DIR / "configs").glob("*.json")):
            self.assertEqual(json.loads(cfg.read_text())["model"]["rmsnorm_eps"], 2.0 ** -23, cfg.name)
        r = run_speedrun("validate-config", self.write_config(tiny_config("a", "b")))
        self.assertSucceeds(r)
        self.assertEqual(json.loads(r.stdout)["model"]["rmsnorm_eps"], 1.1920928955078125e-07)

    def test_track3_adamw_is_baseline_2(self):
        r = run_speedrun("validate-config", speedrun_testing.SOURCE_DIR / "configs" / "track3-adamw.json")
        self.assertSucceeds(r)
        c = json.loads(r.stdout)
        self.assertEqual(c["model"]["init"], "torch_default")
        self.assertEqual((c["train"]["steps"], c["schedule"]["warmup_steps"]), (5625, 250))
        # #2 validated every 125 steps only: no denser final phase.
        self.assertEqual((c["train"]["val_every"], c["train"]["val_every_final"]), (125, 125))
        self.assertEqual({o["type"] for o in c["optimizers"]}, {"adamw"})
        # Every other shipped config keeps the spec's init.
        for cfg in sorted((speedrun_testing.SOURCE_DIR / "configs").glob("*.json")):
            if cfg.name != "track3-adamw.json":
                r = run_speedrun("validate-config", cfg)
                self.assertEqual(json.loads(r.stdout)["model"]["init"], "track3", cfg.name)

    def test_malformed_json(self):
        p = self.tmp / "bad.json"
        p.write_text('{\n  "train": {"steps": 10,}\n}\n')
        self.assertFailsWith(run_speedrun("validate-config", p), "bad.json:2:", "malformed JSON")

    def test_wrong_type_unknown_key_out_of_range_all_reported(self):
        cfg = tiny_config("a", "b")
        cfg["train"]["steps"] = "ten"
        cfg["model"]["n_layers"] = 2
        cfg["optimizers"][1]["lr"] = -0.1
        r = run_speedrun("validate-config", self.write_config(cfg))
        self.assertFailsWith(r, "train.steps: expected an integer >= 1, got \"ten\"",
                             "model.n_layers: unknown key (did you mean 'n_layer'?)",
                             "optimizers[1].lr: expected a number > 0, got -0.1", "3 problems")

    def test_missing_file(self):
        self.assertFailsWith(run_speedrun("validate-config", self.tmp / "nope.json"), "nope.json", "No such file")

    def test_set_overrides(self):
        p = self.write_config(tiny_config("a", "b"))
        r = run_speedrun("validate-config", p, "--set", "train.steps=42", "--set", "optimizers[1].lr=0.5")
        self.assertSucceeds(r)
        c = json.loads(r.stdout)
        self.assertEqual(c["train"]["steps"], 42)
        self.assertEqual(c["optimizers"][1]["lr"], 0.5)
        self.assertFailsWith(run_speedrun("validate-config", p, "--set", "train.stpes=1"),
                             "unknown key 'stpes' (did you mean 'steps'?)")
        self.assertFailsWith(run_speedrun("validate-config", p, "--set", "train.steps=many"),
                             "--set train.steps=many: expected an integer")

    def test_parameter_groups(self):
        cfg = tiny_config("a", "b")
        cfg["optimizers"][0]["params"] = ["embed.weight", "*.bias", "*.gains"]  # head not covered
        self.assertFailsWith(run_speedrun("validate-config", self.write_config(cfg)),
                             "parameter 'proj.weight' is matched by no optimizer entry")
        cfg = tiny_config("a", "b")
        cfg["optimizers"][1]["params"] = ["blocks.*"]  # also grabs biases and gains
        self.assertFailsWith(run_speedrun("validate-config", self.write_config(cfg)), "matched by both")
        cfg = tiny_config("a", "b")
        cfg["optimizers"][1]["params"] = ["blocks.*.weight", "blocks.*.wieght"]
        self.assertFailsWith(run_speedrun("validate-config", self.write_config(cfg)),
                             "optimizers[1].params[1]: pattern 'blocks.*.wieght' matches no parameter")

    def test_reference_is_current(self):
        r = run_speedrun("validate-config", "--reference")
        self.assertSucceeds(r)
        doc = speedrun_testing.SOURCE_DIR / "docs" / "config.md"
        self.assertEqual(doc.read_text(), r.stdout,
                         "docs/config.md is stale: regenerate with speedrun validate-config --reference > docs/config.md")


class TestTrain(CliTestCase):
    def test_tiny_run_writes_run_directory(self):
        cfg = self.tiny(target_val_loss=20.0)
        r = run_speedrun("train", cfg, "--run-name", "r1")
        self.assertSucceeds(r)
        run = self.tmp / "runs" / "r1"
        for f in ("config.json", "metrics.jsonl", "log.txt", "summary.json"):
            self.assertTrue((run / f).exists(), f)
        val_lines = [l for l in r.stdout.splitlines() if l.startswith("step:") and "val_loss" in l]
        self.assertEqual([UPSTREAM_VAL_LINE.match(l).group(1) for l in val_lines], ["0", "3", "6"], r.stdout)
        self.assertTrue(val_lines[0].endswith("step_avg:nanms"))
        metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        self.assertEqual([m["step"] for m in metrics if "val_loss" in m], [0, 3, 6])
        self.assertEqual([m["step"] for m in metrics if "train_loss" in m], [1, 2, 3, 4, 5, 6])
        summary = json.loads((run / "summary.json").read_text())
        self.assertEqual(summary["steps"], 6)
        self.assertEqual(summary["first_at_target"]["step"], 0)
        resolved = json.loads((run / "config.json").read_text())
        self.assertTrue(resolved["data"]["train_glob"].startswith(str(self.tmp)))
        # The log repeats the console's validation lines.
        logged = [l for l in (run / "log.txt").read_text().splitlines() if l.startswith("step:") and "val_loss" in l]
        self.assertEqual(logged, val_lines)

    def test_same_seed_same_run(self):
        # Same seed and thread count: bitwise the same losses. Another thread count: our own
        # reductions are thread-count independent, but OpenBLAS's GEMM kernels for some CPUs
        # (AMD EPYC, OPENBLAS_CORETYPE=Haswell) round differently per thread count, so the
        # losses then agree to fp32 rounding only (docs/correctness.md).
        cfg = self.tiny()
        runs = {name: run_speedrun("train", cfg, "--run-name", name, "--no-progress", *extra)
                for name, extra in (("a", ()), ("b", ()), ("one", ("--set", "train.threads=1")))}
        losses = {}
        for name, r in runs.items():
            self.assertSucceeds(r)
            summary = json.loads((self.tmp / "runs" / name / "summary.json").read_text())
            losses[name] = [v["val_loss"] for v in summary["val"]]
        self.assertEqual(len(losses["a"]), 3)
        self.assertEqual(losses["a"], losses["b"])
        for x, y in zip(losses["a"], losses["one"]):
            self.assertAlmostEqual(x / y, 1.0, delta=1e-5)

    def test_existing_run_directory_is_not_overwritten(self):
        cfg = self.tiny()
        self.assertSucceeds(run_speedrun("train", cfg, "--run-name", "r"))
        marker = self.tmp / "runs" / "r" / "config.json"
        before = marker.read_text()
        self.assertFailsWith(run_speedrun("train", cfg, "--run-name", "r"), "already exists", "--force")
        self.assertEqual(marker.read_text(), before)
        self.assertSucceeds(run_speedrun("train", cfg, "--run-name", "r", "--force"))
        # --force never deletes a directory that is not a run.
        other = self.tmp / "runs" / "mine"
        other.mkdir()
        (other / "notes.txt").write_text("precious")
        self.assertFailsWith(run_speedrun("train", cfg, "--run-name", "mine", "--force"), "not a speedrun run directory")
        self.assertEqual((other / "notes.txt").read_text(), "precious")
        self.assertFailsWith(run_speedrun("train", cfg, "--run-name", "../x"), "plain directory name")

    def test_unwritable_output_directory(self):
        blocker = self.tmp / "file"
        blocker.write_text("x")
        cfg = self.tiny(out_dir=str(blocker / "runs"))
        self.assertFailsWith(run_speedrun("train", cfg), str(blocker))

    def test_empty_glob(self):
        cfg = tiny_config("data/none_*.bin", "data/t_val_*.bin")
        self.make_data()
        self.assertFailsWith(run_speedrun("train", self.write_config(cfg)), "data.train_glob: no files match")

    def test_corrupt_and_truncated_shards(self):
        cfg = self.tiny()
        shard = self.tmp / "data" / "t_train_000001.bin"
        data = shard.read_bytes()
        shard.write_bytes(data[:-10])
        self.assertFailsWith(run_speedrun("train", cfg), "t_train_000001.bin", "truncated")
        write_shard(shard, [1] * 500, magic=1234)
        self.assertFailsWith(run_speedrun("train", cfg), "magic number is 1234")
        write_shard(shard, [1] * 500, version=2)
        self.assertFailsWith(run_speedrun("train", cfg), "version 2")

    def test_token_id_beyond_vocab(self):
        cfg = self.tiny()
        # In the validation set (its first 64 tokens are read) ...
        write_shard(self.tmp / "data" / "t_val_000000.bin", [5] * 10 + [50300] + [5] * 189)
        self.assertFailsWith(run_speedrun("train", cfg), "t_val_000000.bin", "id 50300 at token 10", "vocab_size 50257")
        # ... and in a training shard (read whole).
        self.make_data()
        write_shard(self.tmp / "data" / "t_train_000001.bin", [7] * 1500 + [65535] + [7] * 499)
        self.assertFailsWith(run_speedrun("train", cfg), "t_train_000001.bin", "id 65535 at token 1500")

    def test_not_enough_data_fails_before_training(self):
        cfg = self.tiny(steps=1000)
        r = run_speedrun("train", cfg)
        self.assertFailsWith(r, "data.train_glob: the run needs 1000 batches", "data.epochs")
        self.assertNotIn("val_loss", r.stdout)
        self.assertSucceeds(run_speedrun("train", cfg, "--set", "data.epochs=40", "--set", "train.steps=40",
                                         "--no-progress"))

    def test_divergence_is_reported_with_step(self):
        cfg = self.tiny()
        r = run_speedrun("train", cfg, "--set", "optimizers[0].lr=1e38", "--set", "optimizers[1].lr=1e38")
        self.assertFailsWith(r, "at step", "diverged")

    def test_cuda_without_device_is_clear(self):
        r = run_speedrun("train", self.tiny(), "--device", "cuda")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"device cuda: (no CUDA device|this binary was built without CUDA)")


if __name__ == "__main__":
    speedrun_testing.main()
