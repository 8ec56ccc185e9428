"""The command line: usage errors, info, validate-config, and train on tiny data —
including every kind of bad input, each of which must give a clear message naming
the file/key/value and a non-zero exit, never a crash."""
import ctypes
import json
import math
import os
import random
import re
import resource
import subprocess
import sys
import time

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

    def test_every_command_missing_argument_and_unknown_flag(self):
        # Every usage error, whatever the command, exits 2 and prints that command's usage
        # to stderr, naming what is wrong (issue 12: validate-config without a config exited 1).
        cfg = self.write_config(tiny_config("a", "b"))
        cases = [
            # (arguments, a fragment of the message)
            (["train"], "config is required"),
            (["bench"], "config is required"),
            (["compare"], "configs is required"),
            (["tokenize", "--out", self.tmp / "o"], "inputs is required"),
            (["tokenize", cfg], "--out is required"),
            (["validate-config"], "config (or --reference) is required"),
            (["train", cfg, "--bogus"], "--bogus"),
            (["bench", cfg, "--bogus"], "--bogus"),
            (["compare", cfg, "--bogus"], "--bogus"),
            (["tokenize", cfg, "--out", self.tmp / "o", "--bogus"], "--bogus"),
            (["validate-config", cfg, "--bogus"], "--bogus"),
            (["info", "--bogus"], "--bogus"),
            (["bench", "--bogus"], "unknown argument --bogus"),  # named even though CONFIG is missing too
            (["info", "extra"], "extra"),
            (["train", cfg, "extra"], "extra"),
            # Typed flags with values they cannot take.
            (["train", cfg, "--device", "gpu"], "--device"),
            (["bench", cfg, "--steps", "0"], "--steps"),
            (["bench", cfg, "--steps", "many"], "--steps"),
            (["bench", cfg, "--warmup", "-1"], "--warmup"),
            (["compare", cfg, "--seeds", "0"], "--seeds"),
            (["compare", cfg, "--target", "-1"], "--target: expected a loss > 0, got -1"),
            (["compare", cfg, "--target", "low"], "--target"),
            (["tokenize", cfg, "--out", self.tmp / "o", "--threads", "0"], "--threads"),
            (["tokenize", cfg, "--out", self.tmp / "o", "--shard-tokens", "0"], "--shard-tokens"),
            (["tokenize", cfg, "--out", self.tmp / "o", "--shard-tokens", str(2**31)], "--shard-tokens"),
            (["tokenize", cfg, "--out", self.tmp / "o", "--val-tokens", "-1"], "--val-tokens"),
            (["tokenize", cfg, "--out", self.tmp / "o", "--encoder", cfg], "--vocab"),
            # A --set that is not KEY=VALUE is a malformed flag value too (it exited 1).
            (["train", cfg, "--set", "train.steps"], "expected KEY=VALUE, e.g. --set train.steps=100, got 'train.steps'"),
            (["validate-config", cfg, "--set", "=3"], "expected KEY=VALUE"),
            (["bench", cfg, "--set", "train.steps"], "expected KEY=VALUE"),
            (["compare", cfg, "--set", "train.steps"], "expected KEY=VALUE"),
        ]
        for args, fragment in cases:
            with self.subTest(args=" ".join(map(str, args))):
                r = run_speedrun(*args)
                self.assertFailsWith(r, fragment, "Usage:", code=2)
                self.assertEqual(r.stdout, "")
                usage = r.stderr[r.stderr.index("Usage:"):]
                self.assertIn(args[0], usage.splitlines()[0])  # the command's own usage
        self.assertFalse((self.tmp / "o").exists())  # nothing ran

    def test_usage_names_the_program_and_suggests(self):
        # Issue 19's trial: the usage after an error lacked "speedrun", and CLI11 listed
        # unexpected arguments in reverse order without a suggestion.
        cfg = self.write_config(tiny_config("a", "b"))
        r = run_speedrun("bench", cfg, "--stpes", "3")
        self.assertFailsWith(r, "error: unknown argument --stpes 3 (did you mean --steps?)", code=2)
        self.assertIn("Usage: speedrun bench [OPTIONS] config", r.stderr)
        r = run_speedrun("train", cfg, "--bogus", "extra")
        self.assertFailsWith(r, "unknown argument --bogus extra", code=2)
        r = run_speedrun("train", cfg, "extra", "--bogus")
        self.assertFailsWith(r, "unexpected argument extra (speedrun train takes config); unknown argument --bogus "
                                "(speedrun train has no such option)", code=2)
        self.assertIn("Usage: speedrun train", r.stderr)
        r = run_speedrun("trian", cfg)
        self.assertFailsWith(r, "unknown command trian (did you mean train?)", "Usage: speedrun [OPTIONS] SUBCOMMAND",
                             code=2)
        r = run_speedrun("tokenize", "--out", self.tmp / "o", "--jsonl-feild", "text", cfg)
        self.assertFailsWith(r, "did you mean --jsonl-field?", code=2)

    def test_bench_help_shows_its_defaults(self):
        r = run_speedrun("bench", "--help")
        self.assertSucceeds(r)
        self.assertRegex(r.stdout, r"--steps INT:INT in \[1 - 100000\]=5")
        self.assertRegex(r.stdout, r"--warmup INT:INT in \[0 - 100000\]=1")
        self.assertIn("default: the config's train.device", r.stdout)

    def test_no_subcommand(self):
        self.assertFailsWith(run_speedrun(), "subcommand", code=2)

    def test_every_command_has_help(self):
        for cmd in ("train", "bench", "compare", "tokenize", "info", "validate-config", "runs", "plot"):
            r = run_speedrun(cmd, "--help")
            self.assertSucceeds(r)
            self.assertIn("Usage", r.stdout)

    def test_info(self):
        r = run_speedrun("info")
        self.assertSucceeds(r)
        for word in ("CUDA", "NCCL", "MPI", "BLAS", "OpenMP"):
            self.assertIn(word, r.stdout)
        self.assertTrue("no CUDA device:" in r.stdout or "CUDA devices:" in r.stdout, r.stdout)

    def test_info_without_a_driver_says_so(self):
        # On a machine without the NVIDIA driver the CUDA runtime reports
        # cudaErrorInsufficientDriver ("CUDA driver version is insufficient"), which
        # suggests there is one: info must say there is none.
        try:
            ctypes.CDLL("libcuda.so.1")
            self.skipTest("skipped: this machine has an NVIDIA driver (libcuda.so.1 loads)")
        except OSError:
            pass
        r = run_speedrun("info")
        self.assertSucceeds(r)
        if "CUDA    yes" not in r.stdout:
            self.skipTest("skipped: built without CUDA")
        self.assertIn("no NVIDIA driver,", r.stdout)
        self.assertIn("no CUDA device: no NVIDIA driver is installed", r.stdout)
        self.assertNotIn("insufficient", r.stdout)
        self.assertNotIn("driver none", r.stdout)
        r = run_speedrun("train", self.tiny(), "--device", "cuda")
        self.assertFailsWith(r, "device cuda: no CUDA device: no NVIDIA driver is installed")


class TestRecord26(CliTestCase):
    """model.arch record26 end to end through the CLI (the model itself: test_reference_record26.py)."""

    def record26_config(self):
        cfg = tiny_config(*self.make_data(train_tokens=4000, val_tokens=300), out_dir=str(self.tmp / "runs"))
        cfg["model"] = {"arch": "record26", "n_layer": 6, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": 32,
                        "attn_block_size": 8, "window_tokens": 24, "window_pattern": "LSSSSL",
                        "logit_softcap": "sigmoid", "logit_cap": 30}
        cfg["train"].update({"batch_tokens": 64, "micro_batch_seqs": 2})
        cfg["data"]["val_tokens"] = 64
        cfg["optimizers"] = [
            {"type": "adamw", "params": ["embed.weight", "value_embeds.*", "lm_head.weight", "scalars"], "lr": 0.01,
             "betas": [0.8, 0.95], "eps": 1e-10},
            {"type": "muon", "params": ["blocks.*"], "lr": 0.02, "momentum_warmup_start": 0.85,
             "momentum_warmup_steps": 3, "ns_preset": "quintic"},
        ]
        return self.write_config(cfg)

    def test_trains_on_the_cpu_with_upstreams_parameter_names(self):
        r = run_speedrun("train", self.record26_config(), "--device", "cpu", "--run-name", "r26", "--save-params",
                         "--no-progress")
        self.assertSucceeds(r)
        run = self.tmp / "runs" / "r26"
        summary = json.loads((run / "summary.json").read_text())
        self.assertEqual(summary["status"], "completed")
        self.assertTrue(all(math.isfinite(v["val_loss"]) for v in summary["val"]))
        names = {p.stem for p in (run / "params").glob("*.npy")}
        self.assertIn("blocks.0.attn.qkv_w", names)
        self.assertIn("value_embeds.2.weight", names)
        self.assertIn("scalars", names)
        self.assertIn("lm_head.weight", names)
        self.assertNotIn("proj.weight", names)

    def test_eval_reproduces_the_final_val_loss_and_sample_refuses(self):
        # The trainer's validation and `speedrun eval` are one computation (train::evaluate_loss)
        # at the same run position (the checkpoint's step of train.steps: record26's window).
        cfg = self.record26_config()
        r = run_speedrun("train", cfg, "--device", "cpu", "--run-name", "r26", "--no-progress")
        self.assertSucceeds(r)
        run = self.tmp / "runs" / "r26"
        summary = json.loads((run / "summary.json").read_text())
        val_glob = str(cfg.parent / json.loads(cfg.read_text())["data"]["val_glob"])  # relative to the config
        r = run_speedrun("eval", run, "--data", val_glob, "--json", "--device", "cpu")
        self.assertSucceeds(r)
        out = json.loads(r.stdout)
        self.assertEqual(out["val_loss"], summary["final_val_loss"])
        # Negative control: the first validation (step 0, other parameters) differs.
        self.assertNotEqual(summary["val"][0]["val_loss"], summary["final_val_loss"])
        # The KV-cache decoder is Track 3's: a record26 checkpoint is refused, naming the arch.
        self.assertFailsWith(run_speedrun("sample", run, "--prompt", "Hello", "--tokens", "4"),
                             "sample supports model.arch track3 only")

    def test_cuda_takes_it_with_a_cuda_head_dim(self):
        # record26 runs on CUDA (its masked attention: kernels/ops/attention_mask.h); what the
        # CUDA kernels cannot run is refused before any device work: this config's head_dim 16.
        r = run_speedrun("validate-config", self.record26_config())
        self.assertSucceeds(r)
        self.assertNotIn("not yet on CUDA", r.stderr)
        if "built without CUDA" not in run_speedrun("bench", self.record26_config(), "--device", "cuda").stderr:
            self.assertFailsWith(run_speedrun("bench", self.record26_config(), "--device", "cuda"),
                                 "model.head_dim = 16: the CUDA attention kernels support head_dim 64 and 128")
        # With head_dim 64 the checks pass: the CUDA memory plan is printed, and bench gets as far
        # as the device (none here; on a GPU it runs).
        cfg = json.loads(self.record26_config().read_text())
        cfg["model"].update({"head_dim": 64, "d_model": 128})
        path = self.write_config(cfg)
        r = run_speedrun("validate-config", path)
        self.assertSucceeds(r)
        if "CUDA    yes" in run_speedrun("info").stdout:
            self.assertIn("device memory plan for --device cuda", r.stderr)
            r = run_speedrun("bench", path, "--device", "cuda", "--steps", "1", "--warmup", "0")
            if r.returncode != 0:
                self.assertFailsWith(r, "no CUDA device")
        # The kernel table stays Track 3's.
        r = run_speedrun("bench", self.record26_config(), "--kernels")
        if "built without CUDA" not in r.stderr:
            self.assertFailsWith(r, "bench --kernels supports model.arch track3 only")

    def test_bad_window_pattern_names_the_key(self):
        cfg = json.loads(self.record26_config().read_text())
        cfg["model"]["window_pattern"] = "LSL"
        self.assertFailsWith(run_speedrun("validate-config", self.write_config(cfg)), "model.window_pattern")


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
        self.assertFailsWith(r, "train.steps: expected an integer in [1, 9.007199255e+15], got \"ten\"",
                             "model.n_layers: unknown key (did you mean 'n_layer'?)",
                             "optimizers[1].lr: expected a number > 0 and a normal fp32 number (1.175494351e-38 to "
                             "3.402823466e+38), got -0.1", "3 problems")

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

    def test_reports_memory_plans_and_data_that_is_not_there(self):
        # The data globs match nothing: the config is valid (exit 0), with a warning that a
        # run would fail; the CPU memory plan (and the CUDA one in a CUDA build) is printed.
        p = self.write_config(tiny_config(str(self.tmp / "none_*.bin"), str(self.tmp / "nothing_*.bin")))
        r = run_speedrun("validate-config", p)
        self.assertSucceeds(r)
        self.assertIn(f"warning: data.train_glob: no files match '{self.tmp / 'none_*.bin'}' (a run would fail)",
                      r.stderr)
        self.assertIn("warning: data.val_glob: no files match", r.stderr)
        self.assertIn("host memory plan for --device cpu", r.stderr)
        self.assertIn("parameters (f32,", r.stderr)
        self.assertNotIn("data (training shard", r.stderr)  # no shards, no data line
        json.loads(r.stdout)  # stdout is still the resolved config alone
        # With data: the shards are counted and the data is in the plan.
        cfg = self.tiny()
        r = run_speedrun("validate-config", cfg)
        self.assertSucceeds(r)
        self.assertIn("data.train_glob: 1 shard(s), 2000 tokens", r.stderr)
        self.assertIn("data (training shard x2, a batch, the validation set)", r.stderr)
        self.assertNotIn("warning", r.stderr)
        # Too few batches for train.steps, too few tokens for data.val_tokens: found from the
        # shard headers (a new user's validate-config said ok, then train refused).
        too_much = ["--set", "train.steps=100000", "--set", "data.val_tokens=64000"]
        r = run_speedrun("validate-config", cfg, *too_much)
        self.assertSucceeds(r)
        self.assertIn("warning: data.train_glob: the run needs 100000 batches of", r.stderr)
        self.assertIn("raise data.epochs to at least", r.stderr)
        self.assertIn("warning: data.val_glob: data.val_tokens = 64000 needs 64001 tokens but the shard(s) hold", r.stderr)
        t = run_speedrun("train", cfg, *too_much, "--no-progress")
        self.assertFailsWith(t, "data.train_glob: the run needs 100000 batches of")
        # A model this machine cannot hold: said, still a valid config.
        r = run_speedrun("validate-config", cfg, "--set", "model.d_model=65536", "--set", "model.n_head=1024")
        self.assertSucceeds(r)
        self.assertRegex(r.stderr, r"warning: a CPU run would not fit on this machine: it needs [\d.]+ GiB \(\d+ bytes\)")

    def test_reference_is_current(self):
        r = run_speedrun("validate-config", "--reference")
        self.assertSucceeds(r)
        doc = speedrun_testing.SOURCE_DIR / "docs" / "config.md"
        self.assertEqual(doc.read_text(), r.stdout,
                         "docs/config.md is stale: regenerate with speedrun validate-config --reference > docs/config.md")


class TestConfigMeansWhatItSays(CliTestCase):
    """Issue 12, section 3: input that passes a schema but is not what was written."""

    def duplicate_lr_config(self):
        text = json.dumps(tiny_config("a", "b"), indent=2)
        # optimizers[1] is {"type": "muon", "params": [...], "lr": 0.02}: write its lr twice.
        self.assertEqual(text.count('"lr": 0.02\n'), 1)
        text = text.replace('"lr": 0.02\n', '"lr": 0.02,\n      "lr": 0.5\n')
        lines = text.splitlines()
        first = lines.index('      "lr": 0.02,') + 1
        self.assertEqual(lines[first], '      "lr": 0.5')
        path = self.tmp / "dup.json"
        path.write_text(text)
        return path, first, first + 1

    def test_duplicate_key_names_path_and_line(self):
        path, first, second = self.duplicate_lr_config()
        self.assertEqual((first, second), (43, 44))  # the file as json.dumps(indent=2) lays it out
        want = f"{path}:44: duplicate key optimizers[1].lr (first at line 43)"
        self.assertFailsWith(run_speedrun("validate-config", path), want)
        self.assertFailsWith(run_speedrun("validate-config", path, "--set", "optimizers[1].lr=0.3"), want)
        r = run_speedrun("train", path, "--set", f"train.out_dir={self.tmp / 'runs'}")
        self.assertFailsWith(r, want)
        self.assertFalse((self.tmp / "runs").exists())

    def test_same_key_set_twice(self):
        p = self.write_config(tiny_config("a", "b"))
        self.assertFailsWith(run_speedrun("validate-config", p, "--set", "optimizers[1].lr=0.1", "--set",
                                          "optimizers[1].lr=0.2"),
                             "--set optimizers[1].lr=0.2: optimizers[1].lr is already set by --set optimizers[1].lr=0.1")

    def test_integers_written_as_floats(self):
        cfg = tiny_config("a", "b")
        cfg["train"]["steps"] = 1e3  # json.dumps writes 1000.0
        p = self.write_config(cfg)
        r = run_speedrun("validate-config", p)
        self.assertSucceeds(r)
        self.assertEqual(json.loads(r.stdout)["train"]["steps"], 1000)
        r = run_speedrun("validate-config", p, "--set", "train.steps=1e3")
        self.assertEqual(json.loads(r.stdout)["train"]["steps"], 1000)
        for value in ("2.5", "1e16", "9223372036854775808"):
            with self.subTest(value=value):
                self.assertFailsWith(run_speedrun("validate-config", p, "--set", f"train.steps={value}"),
                                     f"train.steps={value}" if value.startswith("92") else "train.steps: expected an "
                                     "integer in [1, 9.007199255e+15]")
        # The value came from --set, not from the file: the error says so.
        self.assertFailsWith(run_speedrun("validate-config", p, "--set", "train.steps=2.5"),
                             "got 2.5 (from --set train.steps=2.5)")
        p.write_text(p.read_text().replace("1000.0", "2.5"))
        r = run_speedrun("validate-config", p)
        self.assertFailsWith(r, "train.steps: expected an integer in [1, 9.007199255e+15], got 2.5")
        self.assertNotIn("from --set", r.stderr)

    def test_values_that_vanish_or_overflow_in_fp32(self):
        p = self.write_config(tiny_config("a", "b"))
        normal = "a number > 0 and a normal fp32 number (1.175494351e-38 to 3.402823466e+38)"
        cases = [
            ("optimizers[1].lr=1e-50", f"optimizers[1].lr: expected {normal}, got 1e-50"),
            ("optimizers[0].eps=1e-60", f"optimizers[0].eps: expected {normal}, got 1e-60"),
            ("optimizers[0].eps=1e-40", f"optimizers[0].eps: expected {normal}, got 1e-40"),
            ("model.rmsnorm_eps=1e-50", f"model.rmsnorm_eps: expected {normal}, got 1e-50"),
            ("model.attn_scale=1e39", f"model.attn_scale: expected {normal}, got 1e+39"),
            ("model.logit_cap=0", "model.logit_cap: expected a number in [1.084202172e-19, 9.223372037e+18], got 0"),
            ("optimizers[0].betas=0.9,1.0", "optimizers[0].betas: expected a list of numbers of exactly 2, each in "
                                            "[0, 0.9999999702): below 1 - 2^-25, which fp32 rounds to 1"),
            ("optimizers[0].betas=0.9,0.99999999", "optimizers[0].betas: expected a list of numbers of exactly 2"),
            ("optimizers[1].momentum=0.99999999", "optimizers[1].momentum: expected a number in [0, 0.9999999702)"),
            ("optimizers[1].weight_decay=50", "optimizers[1].weight_decay: lr * weight_decay = 1 must be below 1"),
            ("optimizers[1].weight_decay=1e-7", "optimizers[1].weight_decay: lr * weight_decay = 2e-09 vanishes in "
                                                "fp32"),
        ]
        for setting, message in cases:
            with self.subTest(setting=setting):
                self.assertFailsWith(run_speedrun("validate-config", p, "--set", setting), message)
        # What must stay valid: upstream's eps 2^-23, a beta of 1 - 1e-7 (fp32 0.99999988), a decay of 1 - 2^-24.
        for setting in ("model.rmsnorm_eps=1.1920928955078125e-07", "optimizers[0].betas=0.9,0.9999999",
                        "optimizers[1].weight_decay=3e-6"):
            with self.subTest(setting=setting):
                self.assertSucceeds(run_speedrun("validate-config", p, "--set", setting))

    def test_settings_that_cannot_mean_what_they_say(self):
        p = self.write_config(tiny_config("a", "b"))
        self.assertFailsWith(
            run_speedrun("validate-config", p, "--set", "train.micro_batch_seqs=134217728", "--set",
                         "train.batch_tokens=2147483632"),
            "train.micro_batch_seqs: train.micro_batch_seqs * model.seq_len = 2147483648 tokens per micro-batch "
            "exceeds 2^31 - 1")
        self.assertFailsWith(run_speedrun("validate-config", p, "--set", "data.val_tokens=40"),
                             "data.val_tokens: must be a multiple of model.seq_len = 16, got 40")
        self.assertFailsWith(run_speedrun("validate-config", p, "--set", "train.batch_tokens=80"),
                             "train.batch_tokens: must be a multiple of train.micro_batch_seqs * model.seq_len = 32, "
                             "got 80")


class TestDataIsReadAsAsked(CliTestCase):
    """Issue 12, section 2: every token, shard and file the config names is read, or the
    run says which are not (upstream's shard tails) or refuses."""

    def test_log_states_unread_tails_and_skipped_shards(self):
        cfg = self.tiny(steps=2)
        # 2000 tokens, b = 64: 31 batches (the last at 1920 needs 1920 + 65 < 2000), 16 tokens never an input.
        write_shard(self.tmp / "data" / "t_train_000002.bin", [3] * 65)  # < b + 2: no batch
        r = run_speedrun("train", cfg, "--no-progress")
        self.assertSucceeds(r)
        self.assertIn("2 train shard(s), 2065 tokens, 31 batches per pass", r.stderr)
        self.assertIn("81 of 2065 training tokens per pass are never an input", r.stderr)
        self.assertIn(f"t_train_000002.bin holds 65 tokens, fewer than train.batch_tokens + 2 = 66: no batch is read",
                      r.stderr)
        self.assertIn("validation: the first 64 of 200 tokens in 1 shard(s), 4 sequence(s) over 1 process(es)",
                      r.stderr)

    def test_glob_matching_a_directory_or_the_same_file_twice(self):
        cfg = tiny_config("data/t_train_*", "data/t_val_*.bin", out_dir=str(self.tmp / "runs"))
        self.make_data()
        (self.tmp / "data" / "t_train_dir").mkdir()
        p = self.write_config(cfg)
        self.assertFailsWith(run_speedrun("train", p), "data.train_glob: '", "t_train_dir, which is a directory")
        (self.tmp / "data" / "t_train_dir").rmdir()
        (self.tmp / "data" / "t_train_000009.bin").symlink_to(self.tmp / "data" / "t_train_000001.bin")
        self.assertFailsWith(run_speedrun("train", p), "matches the same file twice",
                             "t_train_000001.bin and ", "t_train_000009.bin")
        self.assertFalse((self.tmp / "runs").exists())

    def test_val_and_train_sharing_a_file_is_said(self):
        cfg = tiny_config("data/t_*.bin", "data/t_val_*.bin", out_dir=str(self.tmp / "runs"), steps=1)
        self.make_data()
        r = run_speedrun("train", self.write_config(cfg), "--no-progress")
        self.assertSucceeds(r)
        self.assertIn("data.val_glob and data.train_glob both match", r.stderr)
        self.assertIn("t_val_000000.bin", r.stderr)


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

    def test_existing_run_directory_is_refused_before_the_memory_plan(self):
        # Issue 19's trial: the memory plan was printed, then the run refused.
        cfg = self.tiny()
        self.assertSucceeds(run_speedrun("train", cfg, "--run-name", "r", "--no-progress"))
        r = run_speedrun("train", cfg, "--run-name", "r", "--no-progress")
        self.assertFailsWith(r, "run directory", "already exists")
        self.assertNotIn("memory plan", r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertIn("memory plan", run_speedrun("train", cfg, "--run-name", "r2", "--no-progress").stderr)

    def test_cuda_head_dim_is_checked_wherever_a_cuda_run_is_planned(self):
        # The list comes from the kernels (cuda::kAttentionHeadDims): 64 and 128 today.
        cfg = self.tiny()  # head_dim 16: the CPU runs it, the CUDA kernels do not
        message = "model.head_dim = 16: the CUDA attention kernels support head_dim 64 and 128"
        self.assertFailsWith(run_speedrun("bench", cfg, "--device", "cuda"), message)
        r = run_speedrun("validate-config", cfg, "--set", "train.device=cuda")
        self.assertSucceeds(r)
        self.assertIn(f"warning: {message}", r.stderr)
        self.assertIn("(a CUDA run would fail)", r.stderr)
        r = run_speedrun("compare", cfg, "--set", "train.device=cuda", "--out", self.tmp / "cmp", "--no-plots")
        self.assertFailsWith(r, f"{cfg}: {message}", "nothing was run")
        self.assertFalse((self.tmp / "cmp" / "runs").exists())
        # Negative control: a listed width passes the check (and then needs a device here).
        r = run_speedrun("bench", cfg, "--device", "cuda", "--set", "model.head_dim=64", "--set", "model.n_head=1",
                         "--set", "model.d_model=64")
        self.assertNotIn("model.head_dim", r.stderr)
        r = run_speedrun("validate-config", cfg, "--set", "train.device=cpu")  # a CPU run: no warning
        self.assertSucceeds(r)
        self.assertNotIn("head_dim", r.stderr)

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

    def test_align_to_bos_trains_on_documents_and_refuses_data_without(self):
        # data.align_to_bos (record #26's loader): sequences start at document starts. Short
        # documents (at most 15 tokens, seq_len 16): the run trains and says so.
        cfg = self.tiny()
        rng = random.Random()
        docs = []
        while len(docs) < 2000:
            docs += [50256] + [rng.randrange(50256) for _ in range(rng.randrange(15))]
        write_shard(self.tmp / "data" / "t_train_000001.bin", docs[:2000])
        # Run names of their own: the default one has the second in it, and both runs may
        # start in the same second (the second would then find the first's directory).
        r = run_speedrun("train", cfg, "--set", "data.align_to_bos=true", "--no-progress", "--run-name", "aligned")
        self.assertSucceeds(r)
        self.assertIn("(document-aligned)", r.stdout + r.stderr)
        # Random ids hold (almost surely) no document start: a clear error before training.
        self.make_data()
        r = run_speedrun("train", cfg, "--set", "data.align_to_bos=true", "--run-name", "unaligned")
        self.assertFailsWith(r, "t_train_000001.bin: data.align_to_bos needs 4 document starts (token 50256)")
        self.assertNotIn("val_loss", r.stdout)
        # A vocabulary without the document token is a config error.
        r = run_speedrun("validate-config", cfg, "--set", "data.align_to_bos=true", "--set", "model.vocab_size=50000",
                         "--set", "model.padded_vocab_size=50048")
        self.assertFailsWith(r, "data.align_to_bos", "model.vocab_size = 50000")

    def test_divergence_is_reported_with_step(self):
        cfg = self.tiny()
        r = run_speedrun("train", cfg, "--set", "optimizers[0].lr=1e38", "--set", "optimizers[1].lr=1e38")
        self.assertFailsWith(r, "at step", "diverged")

    def test_divergence_leaves_strict_json_and_its_reason_in_the_log(self):
        # A loss that overflows: the run stops (exit 1) naming the step; metrics.jsonl keeps
        # every step up to it, the diverged one with null where the loss was not finite
        # (JSON has no NaN/Infinity: a strict parser must accept every line), and log.txt
        # ends with the error the console showed.
        cfg = self.tiny()
        r = run_speedrun("train", cfg, "--run-name", "div", "--set", "optimizers[0].lr=1e38",
                         "--set", "optimizers[1].lr=1e38")
        self.assertFailsWith(r, "diverged")
        run = self.tmp / "runs" / "div"

        def refuse(name):
            raise ValueError(f"non-JSON constant {name}")

        lines = (run / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(l, parse_constant=refuse) for l in lines]
        last = records[-1]
        self.assertIn("train_loss", last)
        self.assertIsNone(last["train_loss"])  # the non-finite loss
        self.assertTrue(all(isinstance(x["train_loss"], float) for x in records[:-1] if "train_loss" in x))
        self.assertIn(f"at step {last['step']}", r.stderr)
        self.assertFalse((run / "summary.json").exists())  # not a finished run
        log = (run / "log.txt").read_text().splitlines()
        error = [l for l in r.stderr.splitlines() if l.startswith("error:")]
        self.assertEqual(len(error), 1, r.stderr)
        self.assertEqual(log[-1], error[0])

    def test_log_holds_what_the_console_showed(self):
        cfg = self.tiny()
        r = run_speedrun("train", cfg, "--run-name", "r")
        self.assertSucceeds(r)
        log = (self.tmp / "runs" / "r" / "log.txt").read_text().splitlines()
        self.assertTrue(log[0].startswith("speedrun "), log[0])  # version and command line
        self.assertIn("--run-name r", log[0])
        # Info lines (the memory plan, model, data), the console's stdout lines in order
        # (progress as plain lines, validation, the final status), nothing else.
        self.assertTrue(any(l.startswith("info: host memory plan") for l in log), log)
        self.assertTrue(any(l.startswith("info: model: 1 layers") for l in log), log)
        for line in r.stderr.splitlines():
            if line.startswith(("info:", "warning:")):
                self.assertIn(line, log)
        stdout_lines = r.stdout.splitlines()
        self.assertEqual([l for l in log if l.startswith(("step:", "completed", "target", "run directory"))],
                         stdout_lines)
        self.assertTrue(stdout_lines[-1].startswith("run directory: "), stdout_lines)
        self.assertTrue(any(l.startswith("completed: 6 steps, final val_loss") for l in log), log)

    def test_piped_output_has_plain_lines_only(self):
        # stdout to a pipe (a file, mpirun's output): no carriage returns or escape codes,
        # every line complete, every validation line on its own line.
        r = run_speedrun("train", self.tiny(steps=9, val_every=3), "--run-name", "p")
        self.assertSucceeds(r)
        self.assertNotIn("\r", r.stdout)
        self.assertNotIn("\x1b", r.stdout)
        self.assertTrue(r.stdout.endswith("\n"))
        val = [l for l in r.stdout.splitlines() if re.match(r"^step:.*val_loss", l)]
        self.assertEqual([UPSTREAM_VAL_LINE.match(l).group(1) for l in val], ["0", "3", "6", "9"], r.stdout)
        progress = [l for l in r.stdout.splitlines() if "train_loss:" in l]
        self.assertTrue(progress and all(l.startswith("step:") for l in progress), r.stdout)
        # The first and the last step at least (then at most one line per 10 s).
        self.assertTrue(progress[0].startswith("step:1/9 ") and progress[-1].startswith("step:9/9 "), progress)

    def test_terminal_output_redraws_the_progress_line(self):
        # The other side of the plain lines: on a terminal (a pseudo-terminal here) the
        # progress line is redrawn in place, and every validation line still starts its own line.
        import pty
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen([str(speedrun_testing.SPEEDRUN_BIN), "train", str(self.tiny()), "--run-name", "tty"],
                                    stdout=slave, stderr=subprocess.PIPE)
            os.close(slave)
            chunks = []
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            proc.wait(timeout=120)
        finally:
            os.close(master)
        self.assertEqual(proc.returncode, 0)
        text = b"".join(chunks).decode()
        self.assertIn("\r\x1b[2Kstep:1/6 train_loss:", text)
        lines = text.replace("\r\n", "\n").split("\n")
        # What the terminal shows of each line: what follows its last "return, clear line".
        val = [l.split("\r\x1b[2K")[-1] for l in lines if "val_loss:" in l]
        self.assertEqual([UPSTREAM_VAL_LINE.match(l).group(1) for l in val], ["0", "3", "6"], text)

    def test_model_too_big_for_the_machine_is_refused_with_the_numbers(self):
        # Issue 12: these ended in "internal error: std::bad_alloc" or an OOM kill. Refused
        # before anything is allocated or created, naming the bytes needed (per category)
        # and the bytes available.
        cfg = self.tiny()
        d, heads, head_dim, layers, vocab = 65536, 1024, 16, 1, 50304
        attn = heads * head_dim

        def padded(n):  # each parameter view is 16-float aligned (model/param_layout.cpp)
            return (n + 15) // 16 * 16

        numel = 2 * padded(vocab * d) + padded(vocab) + 2 * padded(d) + layers * (
            3 * (padded(attn * d) + padded(attn)) + padded(d * attn) + padded(d) + padded(4 * d * d) + padded(4 * d)
            + padded(4 * d * d) + padded(d) + 2 * padded(d))
        for command in ("train", "bench"):
            with self.subTest(command=command):
                t0 = time.monotonic()
                r = run_speedrun(command, cfg, "--set", f"model.d_model={d}", "--set", f"model.n_head={heads}",
                                 "--device", "cpu", "--run-name", "big") if command == "train" else \
                    run_speedrun(command, cfg, "--set", f"model.d_model={d}", "--set", f"model.n_head={heads}",
                                 "--device", "cpu")
                seconds = time.monotonic() - t0
                self.assertFailsWith(r, "of host memory but only", "is available (MemAvailable")
                self.assertNotIn("bad_alloc", r.stderr)
                m = re.search(r"needs [\d.]+ GiB \((\d+) bytes\) of host memory but only [\d.]+ [KMG]?i?B \((\d+) bytes\)",
                              r.stderr)
                self.assertIsNotNone(m, r.stderr)
                needed, available = int(m.group(1)), int(m.group(2))
                self.assertGreater(needed, available)
                self.assertGreaterEqual(needed, 2 * 4 * numel)  # parameters and gradients at least
                self.assertIn(f"parameters (f32, {numel / 1e6:.1f}M)", r.stderr)
                self.assertIn(f"{4 * numel / 2**30:.2f} GiB", r.stderr)  # the parameters' line
                self.assertLess(seconds, 20, "refused only after allocating?")
                self.assertFalse((self.tmp / "runs" / "big").exists())

    def test_deep_model_refused_under_a_memory_limit(self):
        # model.n_layer=1000 on the quickstart model needs 11.3 GiB; under an 8 GiB data
        # limit (ulimit -d, as a container's limit would be) it is refused up front.
        quickstart = speedrun_testing.SOURCE_DIR / "configs" / "quickstart.json"
        limit = 8 << 30

        def limit_data():
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

        t0 = time.monotonic()
        r = subprocess.run([str(speedrun_testing.SPEEDRUN_BIN), "train", str(quickstart), "--set",
                            "model.n_layer=1000", "--out-dir", str(self.tmp / "runs"), "--device", "cpu"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit_data,
                           timeout=120)
        self.assertFailsWith(r, "of host memory but only", "RLIMIT_DATA (VmData) 8.00 GiB")
        needed = int(re.search(r"needs [\d.]+ GiB \((\d+) bytes\)", r.stderr).group(1))
        self.assertGreater(needed, limit)
        self.assertLess(time.monotonic() - t0, 20)
        self.assertFalse((self.tmp / "runs").exists() and any((self.tmp / "runs").iterdir()))

    def test_out_of_memory_elsewhere_is_an_error_not_a_bug(self):
        # An allocation no plan covers (here: reading a 2 GiB input under a 1 GiB data
        # limit) fails as an error naming the cause, not as "internal error".
        big = self.tmp / "big.txt"
        with open(big, "wb") as f:
            f.truncate(2 << 30)  # sparse: no disk used

        def limit_data():
            resource.setrlimit(resource.RLIMIT_DATA, (1 << 30, 1 << 30))

        r = subprocess.run([str(speedrun_testing.SPEEDRUN_BIN), "tokenize", str(big), "--out", str(self.tmp / "o")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit_data,
                           timeout=120)
        self.assertFailsWith(r, "error: out of memory: an allocation failed")

    def test_cuda_without_device_is_clear(self):
        r = run_speedrun("train", self.tiny(), "--device", "cuda")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"device cuda: (no CUDA device|this binary was built without CUDA)")



class TestFilesCompleteOrAbsent(CliTestCase):
    """Issue 12, section 4: every file the product writes is complete or absent, a write
    failure exits 1 naming the file and the reason, and a run says "completed" (has a
    summary.json) only once all its outputs exist."""

    def numpy(self):
        try:
            import numpy
        except ImportError as e:
            self.skipTest(f"skipped: numpy is not available ({e}); run scripts/setup.sh")
        return numpy

    def reference_params(self, cfg, *extra):
        """The parameters of a complete --save-params run of `cfg`: {file name: array}."""
        np = self.numpy()
        self.assertSucceeds(run_speedrun("train", cfg, "--run-name", "reference", "--save-params", "--no-progress",
                                         *extra))
        params = self.tmp / "runs" / "reference" / "params"
        arrays = {p.name: np.load(p) for p in params.glob("*.npy")}
        self.assertIn("embed.weight.npy", arrays)
        self.assertIn("norm2.gains.npy", arrays)
        return arrays

    def check_run_is_complete_or_unfinished(self, run, reference):
        """What a failed or killed run may leave: every .npy under its final name is
        complete (loads, same shape and values as the complete run), other names are
        only our hidden temporaries, and a summary.json means every parameter exists."""
        np = self.numpy()
        params = run / "params"
        names = sorted(os.listdir(params)) if params.is_dir() else []
        for name in names:
            if speedrun_testing.TEMPORARY_NAME.match(name):
                continue
            self.assertIn(name, reference)
            try:
                a = np.load(params / name)
            except ValueError as e:
                self.fail(f"{params / name} is incomplete: {e}")
            self.assertEqual(a.shape, reference[name].shape, name)
            self.assertTrue(np.array_equal(a, reference[name]), name)
        for name in os.listdir(run):
            self.assertTrue(name in ("config.json", "metrics.jsonl", "log.txt", "summary.json", "params", "checkpoints")
                            or speedrun_testing.TEMPORARY_NAME.match(name), name)
        if (run / "summary.json").exists():
            summary = json.loads((run / "summary.json").read_text())
            self.assertEqual(summary["status"], "completed")
            self.assertEqual(sorted(n for n in names if n.endswith(".npy") and not n.startswith(".")),
                             sorted(reference))
        # Whole lines only in the append-only streams.
        for stream in ("metrics.jsonl", "log.txt"):
            if (run / stream).exists():
                text = (run / stream).read_text()
                self.assertTrue(text == "" or text.endswith("\n"), stream)
        return (run / "summary.json").exists()

    def test_injected_write_failure_while_saving_params(self):
        # The disk-full report: a 0-byte norm2.gains.npy, exit 0, "completed". Now: exit 1,
        # the file and the reason named, no summary, no norm2.gains.npy, nothing half-written.
        cfg = self.tiny(steps=2, val_every=1)
        reference = self.reference_params(cfg)
        for stage, reason in (("write", "No space left on device"), ("sync", "No space left on device"),
                              ("close", "No space left on device"), ("rename", "Input/output error")):
            with self.subTest(stage=stage):
                name = f"fail-{stage}"
                r = run_speedrun("train", cfg, "--run-name", name, "--save-params", "--no-progress",
                                 env=speedrun_testing.fault_env("norm2.gains", stage))
                self.assertFailsWith(r, "norm2.gains.npy", reason)
                self.assertNotIn("completed", r.stdout)
                run = self.tmp / "runs" / name
                self.assertFalse((run / "summary.json").exists())
                self.assertFalse((run / "params" / "norm2.gains.npy").exists())
                self.assertFalse((run / "params" / "blocks.0.norm2.gains.npy").exists())
                self.assertEqual([n for n in os.listdir(run / "params") if n.startswith(".")], [])
                self.check_run_is_complete_or_unfinished(run, reference)

    def test_injected_write_failure_of_each_run_file(self):
        cfg = self.tiny(steps=2, val_every=1)
        for target in ("config.json", "metrics.jsonl", "log.txt", "summary.json"):
            with self.subTest(file=target):
                name = "fail-" + target.replace(".", "-")
                r = run_speedrun("train", cfg, "--run-name", name, "--no-progress",
                                 env=speedrun_testing.fault_env(target))
                self.assertFailsWith(r, target, "No space left on device")
                run = self.tmp / "runs" / name
                self.assertFalse((run / "summary.json").exists())
                self.assertEqual([n for n in os.listdir(run) if n.startswith(".")], [])
                # The failed run's directory is ours: --force replaces it.
                self.assertSucceeds(run_speedrun("train", cfg, "--run-name", name, "--force", "--no-progress"))
                self.assertEqual(json.loads((run / "summary.json").read_text())["status"], "completed")

    def test_real_full_disk_while_saving_params(self):
        # The reported case: a tmpfs a few KiB too small for the run (exit 0, "completed"
        # and a 0-byte norm2.gains.npy before). Sized from a complete run's files, in
        # tmpfs pages, less two pages; and once far too small (1 MiB: embed.weight alone
        # is 50257 x 32 x 4 bytes = 6.4 MB).
        cfg = self.tiny(steps=2, val_every=1)
        reference = self.reference_params(cfg)
        page = 4096
        needed = sum(-(-f.stat().st_size // page) * page
                     for f in (self.tmp / "runs" / "reference").rglob("*") if f.is_file())
        for size in (f"{(needed - 2 * page) // 1024}k", "1m"):
            with self.subTest(size=size):
                mnt, copy = self.tmp / f"small-{size}", self.tmp / f"small-{size}-copy"
                r = speedrun_testing.run_on_small_tmpfs(
                    self, mnt, size, copy, [speedrun_testing.SPEEDRUN_BIN, "train", cfg, "--run-name", "full",
                                            "--out-dir", mnt, "--save-params", "--no-progress"])
                self.assertFailsWith(r, f"cannot write {mnt / 'full'}", "No space left on device")
                self.assertNotIn("completed", r.stdout)
                run = copy / "full"
                self.assertTrue((run / "config.json").exists())
                self.assertFalse(self.check_run_is_complete_or_unfinished(run, reference))
                # The disk may fill before params/ exists (at the final checkpoint, written first).
                params = os.listdir(run / "params") if (run / "params").exists() else []
                self.assertEqual([n for n in params if n.startswith(".")], [])
                if (run / "checkpoints").exists():
                    self.assertEqual([n for n in os.listdir(run / "checkpoints") if n.startswith(".")], [])

    def test_kill_9_while_saving_params(self):
        # The kill -9 report: summary.json "completed" beside a truncated embed.weight.npy.
        # Kill at random moments from the creation of params/ to the end of the run.
        cfg = self.tiny(steps=2, val_every=1)
        extra = ("--set", "model.d_model=128", "--set", "model.n_head=8", "--set", "train.steps=1")
        reference = self.reference_params(cfg, *extra)
        argv = [str(speedrun_testing.SPEEDRUN_BIN), "train", str(cfg), "--save-params", "--no-progress", *extra]

        def start(name):
            p = subprocess.Popen([*argv, "--run-name", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            params = self.tmp / "runs" / name / "params"
            deadline = time.monotonic() + 120
            while not params.exists() and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.0005)
            return p, time.monotonic()

        p, t0 = start("timing")
        p.wait(timeout=120)
        save_s = max(time.monotonic() - t0, 0.01)
        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        print(f"\nkill -9 test: saving the parameters takes ~{save_s * 1000:.0f} ms; seed {seed}", file=sys.stderr)
        outcomes = []
        for i in range(10):
            p, _ = start(f"killed-{i}")
            time.sleep(rng.uniform(0, save_s))
            p.kill()
            p.wait(timeout=60)
            run = self.tmp / "runs" / f"killed-{i}"
            finished = self.check_run_is_complete_or_unfinished(run, reference)
            names = os.listdir(run / "params") if (run / "params").exists() else []
            present = len([n for n in names if n.endswith(".npy")])
            temporaries = len([n for n in names if speedrun_testing.TEMPORARY_NAME.match(n)])
            outcomes.append(f"{'finished' if finished else 'unfinished'} ({present} params, {temporaries} temporary)")
        print("kill -9 outcomes: " + ", ".join(outcomes), file=sys.stderr)


if __name__ == "__main__":
    speedrun_testing.main()
