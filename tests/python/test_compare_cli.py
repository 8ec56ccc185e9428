"""speedrun compare on tiny CPU configs: the table, CSV, JSON and plots are written and
agree with each run's own metrics.jsonl and summary.json; a rerun skips finished runs
and reruns unfinished ones; changing a config gives new runs; bad input (a missing or
invalid config, a target never reached, a run that fails) is reported per run without
losing the others' results."""
import csv
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import run_speedrun, write_shard  # noqa: E402


HAVE_MATPLOTLIB = speedrun_testing.HAVE_MATPLOTLIB


def tiny_config(name, muon_lr=0.02, adamw_lr=0.05, **train):
    cfg = {
        "name": name,
        "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": 16},
        "data": {"train_glob": "data/t_train_*.bin", "val_glob": "data/t_val_*.bin", "val_tokens": 64},
        "train": {"batch_tokens": 64, "micro_batch_seqs": 2, "steps": 6, "val_every": 2, "threads": 1},
        "optimizers": [
            {"type": "adamw", "params": ["embed.weight", "proj.weight", "*.bias", "*.gains"], "lr": adamw_lr,
             "betas": [0.8, 0.95], "eps": 1e-10},
            {"type": "muon", "params": ["blocks.*.weight"], "lr": muon_lr},
        ],
    }
    cfg["train"].update(train)
    return cfg


def val_points_of(run_dir):
    """The validation points a run logged itself."""
    points = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "val_loss" in record:
            points.append(record)
    return points


class CompareTestCase(speedrun_testing.SpeedrunTestCase):
    def setUp(self):
        super().setUp()
        # A short repeating text: learnable in a few steps, so targets are reached.
        data = self.tmp / "data"
        data.mkdir()
        pattern = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 198]
        write_shard(data / "t_train_000001.bin", (pattern * 200)[:2000])
        write_shard(data / "t_val_000000.bin", (pattern * 20)[:200])
        self.out = self.tmp / "cmp"

    def write_config(self, cfg, name):
        path = self.tmp / name
        path.write_text(json.dumps(cfg))
        return path

    def compare(self, *configs, seeds=2, extra=(), plots=False, progress=False, env=None):
        # matplotlib takes a second or two to start: only the tests of the plots plot.
        flags = () if progress else ("--no-progress",)
        flags += () if plots else ("--no-plots",)
        return run_speedrun("compare", *configs, "--seeds", seeds, "--out", self.out, *flags, *extra,
                            cwd=self.tmp, timeout=300, env=env)

    def results(self):
        return json.loads((self.out / "results.json").read_text())

    def table_row(self, label):
        for line in (self.out / "comparison.md").read_text().splitlines():
            if line.startswith(f"| {label} |"):
                return [c.strip() for c in line.strip("|").split("|")]
        self.fail(f"no row for {label} in comparison.md")


class TestCompare(CompareTestCase):
    def test_outputs_agree_with_the_runs_and_rerun_resumes(self):
        a = self.write_config(tiny_config("fast", muon_lr=0.05), "fast.json")
        b = self.write_config(tiny_config("slow", muon_lr=0.01), "slow.json")
        target = 9.5
        t0 = time.monotonic()
        r = self.compare(a, b, extra=("--target", target), plots=True)
        first_wall = time.monotonic() - t0
        self.assertSucceeds(r)
        for name in ("comparison.md", "val_points.csv", "results.json"):
            self.assertTrue((self.out / name).is_file(), name)
        if HAVE_MATPLOTLIB:
            for name in ("val_loss_vs_step.png", "val_loss_vs_time.png"):
                png = self.out / name
                self.assertTrue(png.is_file(), r.stdout)
                self.assertEqual(speedrun_testing.png_size(png), (770, 495))
                # Both configs' curves are drawn (line, markers and band), not just a legend swatch.
                for colour in speedrun_testing.CURVE_COLOURS[:2]:
                    count, rows = speedrun_testing.curve_pixels(png, colour)
                    self.assertGreater(count, 300, (name, colour))  # a legend swatch: ~50
                    self.assertGreater(rows, 0.15, (name, colour))
                self.assertLess(speedrun_testing.curve_pixels(png, speedrun_testing.CURVE_COLOURS[2])[0], 50)
        else:
            self.assertIn("plots skipped", r.stdout)
        self.assertIn("| fast |", r.stdout)  # the table is printed
        self.assertEqual(len(re.findall(r"running:", r.stdout)), 4, r.stdout)

        res = self.results()
        self.assertEqual([c["label"] for c in res["configs"]], ["fast", "slow"])
        self.assertEqual(sorted((run["config"], run["seed"]) for run in res["runs"]),
                         [("fast", 0), ("fast", 1), ("slow", 0), ("slow", 1)])
        with (self.out / "val_points.csv").open() as f:
            csv_rows = list(csv.DictReader(f))
        finals = {"fast": [], "slow": []}
        reached = {"fast": [], "slow": []}
        for run in res["runs"]:
            run_dir = self.out / "runs" / os.path.basename(run["run_dir"])
            self.assertEqual(str(run_dir), run["run_dir"])
            self.assertEqual(run["outcome"], "ran")
            # Every validation point: the comparison's JSON and CSV against the run's own log.
            logged = val_points_of(run_dir)
            self.assertEqual([(p["step"], p["val_loss"], p["train_time_s"]) for p in logged],
                             [(p["step"], p["val_loss"], p["train_time_s"]) for p in run["val"]])
            mine = [row for row in csv_rows if row["run_dir"] == run["run_dir"]]
            self.assertEqual([(int(row["step"]), float(row["val_loss"])) for row in mine],
                             [(p["step"], p["val_loss"]) for p in logged])
            summary = json.loads((run_dir / "summary.json").read_text())
            self.assertEqual(run["final_val_loss"], summary["final_val_loss"])
            self.assertEqual(run["step_avg_ms"], summary["step_avg_ms"])
            self.assertEqual(run["tokens_per_s"], summary["tokens_per_s"])
            # The Track 3 rule on the run's own log, and the run's own summary (same target).
            first = next((p for p in logged if p["val_loss"] <= target), None)
            self.assertEqual(run["first_at_target"], first)
            self.assertEqual(summary["first_at_target"], first)
            # Seeds: base seed + k, and only the initialization differs.
            self.assertEqual(json.loads((run_dir / "config.json").read_text())["train"]["seed"], run["seed"])
            finals[run["config"]].append(summary["final_val_loss"])
            if first:
                reached[run["config"]].append(first)
        self.assertTrue(reached["fast"], "the test's target should be reached by the fast config")
        self.assertNotEqual(finals["fast"][0], finals["fast"][1], "seeds should give different runs")

        for label in ("fast", "slow"):
            row = self.table_row(label)
            n = len(finals[label])
            mean = sum(finals[label]) / n
            std = math.sqrt(sum((x - mean) ** 2 for x in finals[label]) / (n - 1))
            self.assertEqual(row[1], "2")
            self.assertEqual(row[2], f"{len(reached[label])}/2 (≤ {target:g})")
            self.assertEqual(row[5], f"{mean:.4f} ± {std:.4f}")
            self.assertEqual(row[6], f"{(target - mean) * math.sqrt(n):.4f} " +
                             ("pass" if (target - mean) * math.sqrt(n) >= 0.004 else "fail"))
            if len(reached[label]) == 2:
                steps = [p["step"] for p in reached[label]]
                self.assertEqual(row[3].split(" ")[0], f"{sum(steps) / 2:.0f}")
            conf = next(c for c in res["configs"] if c["label"] == label)
            self.assertAlmostEqual(conf["final_val_loss"]["mean"], mean, places=12)
            self.assertAlmostEqual(conf["final_val_loss"]["std"], std, places=12)
        self.assertEqual(self.table_row("fast")[7], "(reference)")
        self.assertRegex(self.table_row("slow")[7], r"^\d")  # Welch p against fast

        # Rerun: everything is skipped, and nothing is rewritten.
        stamps = {run["run_dir"]: os.stat(os.path.join(run["run_dir"], "summary.json")).st_mtime_ns
                  for run in res["runs"]}
        t0 = time.monotonic()
        r2 = self.compare(a, b, extra=("--target", target))
        second_wall = time.monotonic() - t0
        self.assertSucceeds(r2)
        self.assertEqual(r2.stdout.count("skipped (finished)"), 4, r2.stdout)
        self.assertNotIn("running:", r2.stdout)
        self.assertLess(second_wall, first_wall)
        res2 = self.results()
        self.assertEqual([run["final_val_loss"] for run in res2["runs"]], [run["final_val_loss"] for run in res["runs"]])
        self.assertEqual([run["outcome"] for run in res2["runs"]], ["reused"] * 4)
        for run_dir, stamp in stamps.items():
            self.assertEqual(os.stat(os.path.join(run_dir, "summary.json")).st_mtime_ns, stamp)

        # A different target only relabels the curves: no rerun, the first step is recomputed.
        r3 = self.compare(a, b, extra=("--target", 100))
        self.assertSucceeds(r3)
        self.assertEqual(r3.stdout.count("skipped (finished)"), 4, r3.stdout)
        self.assertTrue(all(run["first_at_target"]["step"] == 0 for run in self.results()["runs"]))

        # Changing a config's content gives new runs for it, and leaves the old ones alone.
        b2 = self.write_config(tiny_config("slow", muon_lr=0.011), "slow.json")
        r4 = self.compare(a, b2, extra=("--target", target))
        self.assertSucceeds(r4)
        self.assertEqual(r4.stdout.count("skipped (finished)"), 2, r4.stdout)
        self.assertEqual(r4.stdout.count("running:"), 2, r4.stdout)
        new_slow = {run["run_dir"] for run in self.results()["runs"] if run["config"] == "slow"}
        old_slow = {run["run_dir"] for run in res["runs"] if run["config"] == "slow"}
        self.assertFalse(new_slow & old_slow)
        self.assertTrue(all(os.path.isdir(d) for d in old_slow))

    def test_unfinished_run_is_rerun_and_foreign_directory_kept(self):
        a = self.write_config(tiny_config("a"), "a.json")
        r = self.compare(a, seeds=3, progress=True)
        self.assertSucceeds(r)
        # Progress across the comparison: which run, its step, its ETA and, once a run
        # has given a time per run, the whole comparison's.
        self.assertIn("[1/3 a seed 0] step:1/6 train_loss:", r.stdout)
        self.assertRegex(r.stdout, r"\[2/3 a seed 1\] step:6/6 .* eta:\S+ all:\S+")
        runs = self.results()["runs"]
        # Seed 1 "interrupted": no summary.json. Seed 2's directory replaced by someone's files.
        os.remove(os.path.join(runs[1]["run_dir"], "summary.json"))
        foreign = runs[2]["run_dir"]
        for f in os.listdir(foreign):
            path = os.path.join(foreign, f)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)  # checkpoints/ is a directory
        with open(os.path.join(foreign, "notes.txt"), "w") as f:
            f.write("precious")
        r = self.compare(a, seeds=3)
        self.assertFailsWith(r, "1 of 3 runs failed", "not a speedrun run directory")
        self.assertEqual(r.stdout.count("skipped (finished)"), 1, r.stdout)
        self.assertIn("[2/3 a seed 1] running:", r.stdout)
        self.assertIn("[2/3 a seed 1] done", r.stdout)
        self.assertTrue(os.path.exists(os.path.join(runs[1]["run_dir"], "summary.json")))
        with open(os.path.join(foreign, "notes.txt")) as f:
            self.assertEqual(f.read(), "precious")
        self.assertEqual(os.listdir(foreign), ["notes.txt"])
        self.assertEqual(self.table_row("a")[1], "2 (1 failed)")

    def test_failing_runs_and_unreached_target_are_reported_per_run(self):
        good = self.write_config(tiny_config("good"), "good.json")
        bad_data = tiny_config("nodata")
        bad_data["data"]["val_glob"] = "data/missing_val_*.bin"
        bad = self.write_config(bad_data, "nodata.json")
        diverging = self.write_config(tiny_config("diverges", adamw_lr=1e38), "diverges.json")
        r = self.compare(good, bad, diverging, extra=("--target", 0.001))
        self.assertFailsWith(r, "4 of 6 runs failed", "data.val_glob", "diverged")
        self.assertIn("nodata seed 0] FAILED:", r.stdout)
        # The table is still written and printed, with the good config's results.
        good_row = self.table_row("good")
        self.assertEqual(good_row[1], "2")
        self.assertEqual(good_row[2], "0/2 (≤ 0.001)")  # never reached: no steps or time
        self.assertEqual(good_row[3], "—")
        self.assertEqual(good_row[4], "—")
        self.assertTrue(good_row[6].endswith("fail"))
        self.assertEqual(self.table_row("nodata")[1], "0 (2 failed)")
        self.assertEqual(self.table_row("diverges")[1], "0 (2 failed)")
        md = (self.out / "comparison.md").read_text()
        self.assertIn("- nodata seed 1", md)
        self.assertIn("| good |", r.stdout)
        res = self.results()
        failed = [run for run in res["runs"] if run["outcome"] == "failed"]
        self.assertEqual(len(failed), 4)
        for run in failed:
            record = json.loads((self.out / "runs" / os.path.basename(run["run_dir"]) / "failed.json").read_text())
            self.assertEqual(record["error"], run["error"])
        # The diverging runs keep the points they validated before failing.
        self.assertTrue(all(run["val"] for run in failed if run["config"] == "diverges"))
        # A rerun keeps the good runs and retries the failed ones.
        r2 = self.compare(good, bad, diverging, extra=("--target", 0.001))
        self.assertFailsWith(r2, "4 of 6 runs failed")
        self.assertEqual(r2.stdout.count("skipped (finished)"), 2, r2.stdout)

    def test_warns_before_running_when_a_config_validates_too_rarely(self):
        # Issue 19: train.steps <= val_every gives a curve of step 0 and the last step only.
        rare = self.write_config(tiny_config("rare", val_every=10, val_every_final=10), "rare.json")
        often = self.write_config(tiny_config("often"), "often.json")  # every 2 of 6 steps: 3 points
        r = self.compare(rare, often, seeds=1)
        self.assertSucceeds(r)
        self.assertIn("warning: rare: only 1 validation(s) after step 0 (train.steps 6, train.val_every 10", r.stderr)
        self.assertIn("--set train.val_every=1", r.stderr)
        self.assertNotIn("often:", r.stderr)  # negative control
        # The count the warning gave is what the run did.
        runs = {run["config"]: run for run in self.results()["runs"]}
        self.assertEqual([p["step"] for p in runs["rare"]["val"]], [0, 6])
        self.assertEqual([p["step"] for p in runs["often"]["val"]], [0, 2, 4, 6])

    def test_bad_config_is_reported_before_anything_runs(self):
        good = self.write_config(tiny_config("good"), "good.json")
        invalid = tiny_config("invalid")
        invalid["train"]["stpes"] = 3
        invalid_path = self.write_config(invalid, "invalid.json")
        r = self.compare(good, self.tmp / "missing.json", invalid_path)
        self.assertFailsWith(r, "missing.json", "invalid.json", "train.stpes: unknown key", "nothing was run")
        self.assertFalse((self.out / "runs").exists())
        r = self.compare(good, good)
        self.assertFailsWith(r, "same run config")
        # A bad flag value is a usage error (exit 2, with the usage), like every other.
        self.assertFailsWith(self.compare(good, seeds=0), "--seeds: Value 0 not in range", "Usage:", code=2)

    def test_plots_skipped_without_matplotlib(self):
        # A python3 in which `import matplotlib` fails.
        fake = self.tmp / "python-without-matplotlib"
        fake.write_text("#!/bin/sh\nexec /usr/bin/python3 -c 'import runpy, sys; sys.modules[\"matplotlib\"] = None; "
                        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name=\"__main__\")' \"$@\"\n")
        fake.chmod(0o755)
        a = self.write_config(tiny_config("a"), "a.json")
        r = self.compare(a, seeds=1, plots=True, env={"SPEEDRUN_PYTHON": str(fake)})
        self.assertSucceeds(r)
        self.assertIn("plots skipped: matplotlib is not available", r.stdout)
        self.assertIn("python3-matplotlib", r.stdout)
        self.assertTrue((self.out / "comparison.md").is_file())
        self.assertTrue((self.out / "results.json").is_file())
        self.assertFalse((self.out / "val_loss_vs_step.png").exists())

    def test_leftover_temporaries_do_not_confuse_the_resume(self):
        # What kill -9 can leave (core/files.h AtomicFile): hidden temporaries, never a
        # half-written file under its name. They mark a directory as ours, not a user's.
        a = self.write_config(tiny_config("a"), "a.json")
        self.assertSucceeds(self.compare(a, seeds=3))
        runs = [pathlib.Path(run["run_dir"]) for run in self.results()["runs"]]
        # Seed 0: finished, plus a temporary of a second summary write. Reused.
        (runs[0] / ".summary.json.tmp-99999-0").write_text('{"status": "comp')
        # Seed 1: killed while writing its summary: unfinished, rerun.
        (runs[1] / "summary.json").unlink()
        (runs[1] / ".summary.json.tmp-99999-1").write_text('{"status": "comp')
        # Seed 2: killed while the trainer wrote config.json, after a failure record was
        # begun: only temporaries. Rerun, not refused as someone else's directory.
        shutil.rmtree(runs[2])
        runs[2].mkdir()
        (runs[2] / ".config.json.tmp-99999-2").write_text("{")
        (runs[2] / ".failed.json.tmp-99999-3").write_text("{")
        r = self.compare(a, seeds=3)
        self.assertSucceeds(r)
        self.assertEqual(r.stdout.count("skipped (finished)"), 1, r.stdout)
        self.assertIn("[2/3 a seed 1] done", r.stdout)
        self.assertIn("[3/3 a seed 2] done", r.stdout)
        for run in runs[1:]:
            self.assertEqual(json.loads((run / "summary.json").read_text())["status"], "completed")
        # Negative control: a user's file beside the temporaries is still refused.
        shutil.rmtree(runs[2])
        runs[2].mkdir()
        (runs[2] / ".config.json.tmp-99999-2").write_text("{")
        (runs[2] / "notes.txt").write_text("precious")
        self.assertFailsWith(self.compare(a, seeds=3), "not a speedrun run directory")
        self.assertEqual((runs[2] / "notes.txt").read_text(), "precious")

    def test_output_write_failures_fail_the_comparison(self):
        a = self.write_config(tiny_config("a"), "a.json")
        r = self.compare(a, seeds=1, env=speedrun_testing.fault_env("results.json", "close"))
        self.assertFailsWith(r, str(self.out / "results.json"), "No space left on device")
        self.assertFalse((self.out / "results.json").exists())
        self.assertEqual([n for n in os.listdir(self.out) if n.startswith(".")], [])
        if not HAVE_MATPLOTLIB:
            self.skipTest("skipped (the plot part): /usr/bin/python3 has no matplotlib")
        r = self.compare(a, seeds=1, plots=True, env=speedrun_testing.fault_env("val_loss_vs_time"))
        self.assertFailsWith(r, "plots failed", str(self.out / "val_loss_vs_time.png"), "No space left on device")
        self.assertTrue((self.out / "results.json").is_file())
        self.assertEqual((self.out / "val_loss_vs_step.png").read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
        self.assertFalse((self.out / "val_loss_vs_time.png").exists())
        self.assertEqual([n for n in os.listdir(self.out) if n.startswith(".")], [])

    def test_device_overrides_every_config(self):
        # --device cpu: every run's resolved config says cpu, whatever its file said.
        a = self.write_config(tiny_config("a", device="auto"), "a.json")
        b = self.write_config(tiny_config("b", muon_lr=0.03, device="cuda"), "b.json")
        r = self.compare(a, b, seeds=1, extra=("--device", "cpu"))
        self.assertSucceeds(r)
        for run in self.results()["runs"]:
            resolved = json.loads((pathlib.Path(run["run_dir"]) / "config.json").read_text())
            self.assertEqual(resolved["train"]["device"], "cpu", run["run_dir"])
        self.assertFailsWith(self.compare(a, "--device", "gpu"), "--device", code=2)

    def test_device_cuda_without_one_is_refused_before_anything_runs(self):
        info = run_speedrun("info").stdout
        if "CUDA devices:" in info:
            self.skipTest("skipped: this machine has a CUDA device")
        a = self.write_config(tiny_config("a"), "a.json")
        r = self.compare(a, seeds=1, extra=("--device", "cuda"))
        # A CUDA build without a device, or a build without CUDA: either way said once, exit 1.
        self.assertFailsWith(r, "compare --device cuda: device cuda: ")
        self.assertRegex(r.stderr, r"(no CUDA device|this binary was built without CUDA)")
        self.assertFalse((self.out / "runs").exists())

    def test_usage(self):
        self.assertFailsWith(run_speedrun("compare"), "configs", code=2)
        r = run_speedrun("compare", "--help")
        self.assertSucceeds(r)
        self.assertIn("--seeds", r.stdout)
        self.assertIn("initialization only", r.stdout)


def record26_config(name, **train):
    """A tiny record #26 model on tiny_config's data, optimizers and schedule of steps."""
    cfg = tiny_config(name, **train)
    cfg["model"] = {"arch": "record26", "n_layer": 6, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": 16,
                    "attn_block_size": 8, "window_tokens": 16, "window_pattern": "LSSSSL",
                    "logit_softcap": "sigmoid", "logit_cap": 30}
    cfg["optimizers"] = [
        {"type": "adamw", "params": ["embed.weight", "value_embeds.*", "lm_head.weight", "scalars"], "lr": 0.05,
         "betas": [0.8, 0.95], "eps": 1e-10, "eps_placement": "v"},
        {"type": "muon", "params": ["blocks.*"], "lr": 0.02},
    ]
    return cfg


def checkpoint_parameter_count(run_dir):
    """The parameters a run really trained: the model tensors of its final checkpoint (the
    optimizer state's tensors are named optim.*/state.*, not model parameter names)."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
    import safetensors_numpy  # numpy: only this test needs it
    tensors, metadata = safetensors_numpy.read_safetensors(safetensors_numpy.find_checkpoint(run_dir))
    config = json.loads(metadata["speedrun.config"])
    names = [n for n in tensors if n == "scalars" or n.endswith(".weight") or n.endswith(".bias")
             or n.endswith(".gains") or n.endswith(".qkv_w")]
    return sum(tensors[n].size for n in names), config


class TestCompareAcrossArchitectures(CompareTestCase):
    """Issue 17: track3 and record26 side by side. Their losses are per token on the same
    validation tokens; the table says what each model is (arch, parameters, FLOPs/token).
    Configs that validate on other tokens or train on other data are refused before any run."""

    def test_track3_and_record26_side_by_side(self):
        a = self.write_config(tiny_config("t3"), "t3.json")
        b = self.write_config(record26_config("r26"), "r26.json")
        r = self.compare(a, b, seeds=1, extra=("--target", 9.5))
        self.assertSucceeds(r)
        res = self.results()
        by_label = {c["label"]: c for c in res["configs"]}
        self.assertEqual(by_label["t3"]["arch"], "track3")
        self.assertEqual(by_label["r26"]["arch"], "record26")
        runs = {run["config"]: run for run in res["runs"]}
        V, d, hd, f, T = 50304, 32, 32, 128, 16
        # Parameters: what each run's checkpoint holds (the allocated model), and the closed
        # forms of the two layouts: track3 (embed, per block q/k/v/proj/fc/proj weights with
        # biases and two gains, the head with bias, two final gains); record26 (embed, three
        # value embeddings, qkv_w (3, hd, d) and c_proj per block -- all 6 have attention --,
        # c_fc and c_proj, lm_head, 5L scalars rounded up to 8).
        block = 3 * (hd * d + hd) + (d * hd + d) + (f * d + f) + (d * f + d) + 2 * d
        want = {"t3": V * d + block + (V * d + V) + 2 * d,
                "r26": 4 * V * d + 6 * (3 * hd * d + d * hd + f * d + d * f) + V * d + 32}
        for label in ("t3", "r26"):
            got, config = checkpoint_parameter_count(pathlib.Path(runs[label]["run_dir"]))
            self.assertEqual(config["model"]["arch"], by_label[label]["arch"])
            self.assertEqual(by_label[label]["parameters"], got, label)
            self.assertEqual(got, want[label], label)
        # FLOPs/token: 6 per matrix parameter + 6 L T hd of causal attention (model/flops.h).
        for label, layers in (("t3", 1), ("r26", 6)):
            matmul = layers * (4 * d * hd + 2 * d * f) + d * V
            self.assertEqual(by_label[label]["matmul_parameters"], matmul, label)
            self.assertEqual(by_label[label]["flops_per_token"], 6 * matmul + 6 * layers * T * hd, label)
        # Both curves are on the same steps and both runs' losses are finite and fell.
        for run in runs.values():
            self.assertEqual([p["step"] for p in run["val"]], [0, 2, 4, 6])
            self.assertLess(run["val"][-1]["val_loss"], run["val"][0]["val_loss"])
        md = (self.out / "comparison.md").read_text()
        self.assertIn("| config | arch | parameters | FLOPs/token | tokens/step | file |", md)
        self.assertIn(f"| r26 | record26 | {want['r26']} |", md)
        self.assertIn(f"| t3 | track3 | {want['t3']} |", md)
        self.assertIn(f"r26: model.arch record26, {want['r26']} parameters", r.stdout)
        # Each run printed its own validation-line format (record26: train_gpt.py's, in ms).
        self.assertRegex(r.stdout, r"step:6/6 val_loss:\d+\.\d{5} train_time:\d+\.\d{3}s")
        self.assertRegex(r.stdout, r"step:6/6 val_loss:\d+\.\d{4} train_time:\d+ms")

    def test_different_validation_tokens_are_refused(self):
        t3 = self.write_config(tiny_config("t3"), "t3.json")
        # Other data.val_tokens: other tokens evaluated.
        more = record26_config("r26")
        more["data"]["val_tokens"] = 128
        more_path = self.write_config(more, "r26.json")
        r = self.compare(t3, more_path, seeds=1)
        self.assertFailsWith(r, "validate on different tokens", "cannot be compared", "r26 (", "data.val_tokens 128",
                             "t3 (", "data.val_tokens 64", "nothing was run")
        self.assertFalse((self.out / "runs").exists())
        # The same relative glob from another directory, whose validation shard differs in one token.
        other = self.tmp / "other"
        (other / "data").mkdir(parents=True)
        shutil.copy(self.tmp / "data" / "t_train_000001.bin", other / "data")
        tokens = speedrun_testing.read_shard(self.tmp / "data" / "t_val_000000.bin")
        tokens = list(tokens)
        tokens[40] = (tokens[40] + 1) % 50000
        write_shard(other / "data" / "t_val_000000.bin", tokens)
        moved = other / "r26.json"
        moved.write_text(json.dumps(record26_config("r26")))
        r = self.compare(t3, moved, seeds=1)
        self.assertFailsWith(r, "validate on different tokens", str(other / "data" / "t_val_*.bin"))
        self.assertNotIn("train on different data", r.stderr)
        self.assertFalse((self.out / "runs").exists())
        # Negative control: the same tokens in another file (a copy) are the same validation set.
        tokens[40] = speedrun_testing.read_shard(self.tmp / "data" / "t_val_000000.bin")[40]
        write_shard(other / "data" / "t_val_000000.bin", tokens)
        r = self.compare(t3, moved, seeds=1, extra=("--set", "train.steps=2"))
        self.assertSucceeds(r)

    def test_different_training_data_is_refused(self):
        t3 = self.write_config(tiny_config("t3"), "t3.json")
        (self.tmp / "data2").mkdir()
        tokens = list(speedrun_testing.read_shard(self.tmp / "data" / "t_train_000001.bin"))
        write_shard(self.tmp / "data2" / "t_train_000001.bin", tokens[1:] + tokens[:1])
        other = record26_config("r26")
        other["data"]["train_glob"] = "data2/t_train_*.bin"
        r = self.compare(t3, self.write_config(other, "r26.json"), seeds=1)
        self.assertFailsWith(r, "train on different data", "data2/t_train_*.bin", "nothing was run")
        self.assertNotIn("validate on different tokens", r.stderr)
        self.assertFalse((self.out / "runs").exists())


if __name__ == "__main__":
    speedrun_testing.main()
