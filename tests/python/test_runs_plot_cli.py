"""`speedrun runs` and `speedrun plot` (issue 19): the runs of a directory listed newest
first with what their files say (finished, running, failed, killed), and their curves
drawn — checked against the runs' own files, and the PNGs for size and drawn curves."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import (CURVE_COLOURS, HAVE_MATPLOTLIB, curve_pixels, png_size, run_speedrun,  # noqa: E402
                              write_shard)

PATTERN = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 198]


def tiny_config(**train):
    cfg = {
        "name": "tiny",
        "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": 16},
        "data": {"train_glob": "data/t_train_*.bin", "val_glob": "data/t_val_*.bin", "val_tokens": 64},
        "train": {"batch_tokens": 64, "micro_batch_seqs": 2, "steps": 6, "val_every": 2, "threads": 1,
                  "target_val_loss": 9.5},
        "optimizers": [
            {"type": "adamw", "params": ["embed.weight", "proj.weight", "*.bias", "*.gains"], "lr": 0.05,
             "betas": [0.8, 0.95], "eps": 1e-10},
            {"type": "muon", "params": ["blocks.*.weight"], "lr": 0.02},
        ],
    }
    cfg["train"].update(train)
    return cfg


def fake_run(dir, train, val, steps, target=None, lr=None):
    """A run directory as the trainer writes it, with given curves: train and val are
    lists of (step, loss, time)."""
    dir.mkdir(parents=True)
    (dir / "config.json").write_text(json.dumps({"train": {"steps": steps, "target_val_loss": target,
                                                           "device": "cpu"}}))
    lines = [json.dumps({"step": s, "val_loss": l, "train_time_s": t}) for s, l, t in val[:1]]
    for s, l, t in train:
        record = {"step": s, "train_loss": l, "lr_factor": lr(s) if lr else 1.0, "train_time_s": t,
                  "tokens_per_s": 1000.0}
        lines.append(json.dumps(record))
        lines += [json.dumps({"step": vs, "val_loss": vl, "train_time_s": vt}) for vs, vl, vt in val[1:] if vs == s]
    (dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


class RunsPlotTestCase(speedrun_testing.SpeedrunTestCase):
    def setUp(self):
        super().setUp()
        data = self.tmp / "data"
        data.mkdir()
        write_shard(data / "t_train_000001.bin", (PATTERN * 200)[:2000])
        write_shard(data / "t_val_000000.bin", (PATTERN * 20)[:200])
        self.runs = self.tmp / "runs"

    def config(self, name="run.json", **train):
        path = self.tmp / name
        train.setdefault("out_dir", str(self.runs))
        path.write_text(json.dumps(tiny_config(**train)))
        return path

    def listed(self, *extra):
        r = run_speedrun("runs", self.runs, "--json", *extra)
        self.assertSucceeds(r)
        return {run["name"]: run for run in json.loads(r.stdout)}


class TestRuns(RunsPlotTestCase):
    def test_statuses_and_figures_come_from_the_run_files(self):
        cfg = self.config()
        self.assertSucceeds(run_speedrun("train", cfg, "--run-name", "done", "--no-progress", cwd=self.tmp))
        diverging = self.tmp / "div.json"
        d = tiny_config(out_dir=str(self.runs))
        d["optimizers"][0]["lr"] = 1e38
        diverging.write_text(json.dumps(d))
        failed = run_speedrun("train", diverging, "--run-name", "diverged", "--no-progress", cwd=self.tmp)
        self.assertFailsWith(failed, "diverged")
        # Killed: a run whose process ended without a summary or an error line.
        shutil.copytree(self.runs / "done", self.runs / "killed")
        (self.runs / "killed" / "summary.json").unlink()
        # A comparison's runs one level deeper are found too.
        shutil.copytree(self.runs / "done", self.runs / "cmp" / "runs" / "a-seed0")
        # Start times: config.json's mtime, newest first.
        for i, name in enumerate(("done", "diverged", "killed", "cmp/runs/a-seed0")):
            t = time.time() - 1000 + 100 * i
            os.utime(self.runs / name / "config.json", (t, t))

        runs = self.listed()
        r = run_speedrun("runs", self.runs, "--json")
        self.assertEqual([run["name"] for run in json.loads(r.stdout)], ["cmp/runs/a-seed0", "killed", "diverged", "done"])
        summary = json.loads((self.runs / "done" / "summary.json").read_text())
        done = runs["done"]
        self.assertEqual(done["status"], "completed")
        self.assertEqual((done["steps_done"], done["steps_total"]), (6, 6))
        self.assertEqual(done["final_val_loss"], summary["val"][-1]["val_loss"])
        self.assertEqual(done["first_step_at_target"], summary["first_at_target"]["step"])
        self.assertEqual(done["tokens_per_s"], summary["tokens_per_s"])
        self.assertEqual(done["device"], "cpu")  # from the log's training line, not train.device "auto"
        self.assertEqual(runs["diverged"]["status"], "failed")
        self.assertIn("diverged", runs["diverged"]["detail"])
        killed = runs["killed"]
        self.assertEqual(killed["status"], "killed")
        metrics = [json.loads(l) for l in (self.runs / "killed" / "metrics.jsonl").read_text().splitlines()]
        self.assertEqual(killed["steps_done"], max(m["step"] for m in metrics if "train_loss" in m))
        self.assertEqual(killed["final_val_loss"], [m for m in metrics if "val_loss" in m][-1]["val_loss"])

        table = run_speedrun("runs", self.runs)
        self.assertSucceeds(table)
        lines = table.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["name", "status", "steps", "val_loss", "at", "target", "tokens/s",
                                            "device", "started"])
        row = next(l for l in lines if l.startswith("done "))
        self.assertEqual(row.split()[:5], ["done", "completed", "6/6", f"{done['final_val_loss']:.5f}", "step"])
        self.assertTrue(any(l.startswith("diverged: error:") for l in lines), table.stdout)

    def test_a_running_run_and_the_same_run_killed(self):
        cfg = self.config(steps=100000, val_every=50, val_every_final=50)
        with open(cfg) as f:
            c = json.load(f)
        c["data"]["epochs"] = 100000
        cfg.write_text(json.dumps(c))
        proc = subprocess.Popen([str(speedrun_testing.SPEEDRUN_BIN), "train", str(cfg), "--run-name", "live",
                                 "--no-progress"], cwd=self.tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            metrics = self.runs / "live" / "metrics.jsonl"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (not metrics.exists() or metrics.read_text().count("train_loss") < 3):
                time.sleep(0.2)
            run = self.listed()["live"]
            self.assertEqual(run["status"], "running")
            self.assertGreaterEqual(run["steps_done"], 3)
            self.assertEqual(run["steps_total"], 100000)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.assertEqual(self.listed()["live"]["status"], "killed")

    def test_bad_directories(self):
        self.assertFailsWith(run_speedrun("runs", self.tmp / "nowhere"), str(self.tmp / "nowhere"), "does not exist")
        (self.tmp / "file").write_text("x")
        self.assertFailsWith(run_speedrun("runs", self.tmp / "file"), "is not a directory")
        self.runs.mkdir()
        r = run_speedrun("runs", self.runs)
        self.assertSucceeds(r)
        self.assertIn("no runs in", r.stdout)
        # A run whose config.json is not JSON is listed as unreadable, with the reason.
        (self.runs / "broken").mkdir()
        (self.runs / "broken" / "config.json").write_text("{")
        (self.runs / "broken" / "metrics.jsonl").write_text("")
        run = self.listed()["broken"]
        self.assertEqual(run["status"], "unreadable")
        self.assertIn("config.json", run["detail"])
        self.assertFailsWith(run_speedrun("runs", "--bogus"), "unknown argument --bogus", code=2)


class TestPlot(RunsPlotTestCase):
    def setUp(self):
        super().setUp()
        if not HAVE_MATPLOTLIB:
            self.skipTest("skipped: /usr/bin/python3 has no matplotlib (python3-matplotlib)")

    def test_one_run_with_its_schedule_and_two_runs(self):
        cfg = self.config(steps=12, val_every=3)
        self.assertSucceeds(run_speedrun("train", cfg, "--run-name", "a", "--no-progress", cwd=self.tmp))
        self.assertSucceeds(run_speedrun("train", cfg, "--run-name", "b", "--no-progress", "--set", "train.seed=1",
                                         cwd=self.tmp))
        r = run_speedrun("plot", self.runs / "a")
        self.assertSucceeds(r)
        png = self.runs / "a" / "loss.png"
        self.assertIn(str(png), r.stdout)
        self.assertEqual(png_size(png), (1320, 495))
        self.assertIn(b"speedrun plot", png.read_bytes()[:4096])  # tagged as ours
        count, rows = curve_pixels(png, CURVE_COLOURS[0])
        self.assertGreater(count, 800)
        self.assertGreater(rows, 0.25)
        self.assertLess(curve_pixels(png, CURVE_COLOURS[1])[0], 50)  # one run: one colour
        # Our own plot is replaced by a rerun.
        before = png.stat().st_mtime_ns
        time.sleep(0.01)
        self.assertSucceeds(run_speedrun("plot", self.runs / "a"))
        self.assertNotEqual(png.stat().st_mtime_ns, before)

        out = self.tmp / "ab.png"
        r = run_speedrun("plot", self.runs / "a", self.runs / "b", "--out", out)
        self.assertSucceeds(r)
        self.assertEqual(png_size(out), (1320, 495))
        for colour in CURVE_COLOURS[:2]:
            count, rows = curve_pixels(out, colour)
            self.assertGreater(count, 800, colour)
            self.assertGreater(rows, 0.2, colour)

    def test_a_run_far_above_the_others_leaves_theirs_readable(self):
        # "high" starts at 30 and needs 10 steps to come down; "low" is an ordinary curve.
        high = [(s, 30.0 - 2.5 * s if s < 10 else 5.5 - 0.01 * s, 0.1 * s) for s in range(1, 101)]
        low = [(s, 5.0 - 0.005 * s, 0.1 * s) for s in range(1, 101)]
        fake_run(self.runs / "high", high, [(0, 10.8, 0.0), (50, 5.0, 5.0), (100, 4.5, 10.0)], 100)
        fake_run(self.runs / "low", low, [(0, 10.8, 0.0), (50, 4.75, 5.0), (100, 4.5, 10.0)], 100)
        out = self.tmp / "far.png"
        r = run_speedrun("plot", self.runs / "high", self.runs / "low", "--out", out)
        self.assertSucceeds(r)
        self.assertIn("y range clipped", r.stdout)  # said, and in the plot
        _, rows = curve_pixels(out, CURVE_COLOURS[1])
        self.assertGreater(rows, 0.2, "the lower run is squashed into a stub")

    def test_refusals(self):
        fake_run(self.runs / "r", [(1, 9.0, 0.1), (2, 8.0, 0.2)], [(0, 10.8, 0.0), (2, 8.5, 0.2)], 2)
        mine = self.tmp / "mine.png"
        mine.write_bytes(b"\x89PNG\r\n\x1a\n not a plot of ours")
        r = run_speedrun("plot", self.runs / "r", "--out", mine)
        self.assertFailsWith(r, str(mine), "not a plot speedrun drew", "--force")
        self.assertEqual(mine.read_bytes(), b"\x89PNG\r\n\x1a\n not a plot of ours")
        self.assertSucceeds(run_speedrun("plot", self.runs / "r", "--out", mine, "--force"))
        self.assertEqual(png_size(mine), (1320, 495))
        (self.tmp / "notarun").mkdir()
        self.assertFailsWith(run_speedrun("plot", self.tmp / "notarun"), "not a run directory", "metrics.jsonl")
        self.assertFailsWith(run_speedrun("plot"), "runs is required", code=2)
        # Without matplotlib the plot is the whole point: an error, saying why.
        fake = self.tmp / "python-without-matplotlib"
        fake.write_text("#!/bin/sh\nexec /usr/bin/python3 -c 'import runpy, sys; sys.modules[\"matplotlib\"] = None; "
                        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name=\"__main__\")' \"$@\"\n")
        fake.chmod(0o755)
        r = run_speedrun("plot", self.runs / "r", "--out", self.tmp / "x.png", env={"SPEEDRUN_PYTHON": str(fake)})
        self.assertFailsWith(r, "matplotlib is not available", "python3-matplotlib")
        self.assertFalse((self.tmp / "x.png").exists())


if __name__ == "__main__":
    speedrun_testing.main()
