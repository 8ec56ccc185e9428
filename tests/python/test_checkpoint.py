"""Checkpoints and exact resume (issue 15; docs/checkpoints.md).

- A run resumed from any of its checkpoints ends bitwise equal to the uninterrupted run
  (parameters from --save-params, every metrics record but the wall-clock fields), on
  the CPU at the same thread count: resumed from an earlier checkpoint of a finished run,
  after SIGINT (exit 130, status "interrupted"), and after SIGKILLs at random moments
  while it writes a checkpoint every step (kill -9 safety: every file under a
  checkpoint's name is whole, temporaries aside, and the newest one resumes).
- Under mpirun -np 2 the same, bitwise against the uninterrupted 2-rank run; a 1-rank
  checkpoint resumes under 2 ranks (re-sharded, close but not bitwise).
- A truncated or corrupted checkpoint, or a config whose model/data/optimizer settings
  differ, is refused with exit 1 naming the file or the keys.
Small models (a step takes milliseconds) keep the whole module well under a minute.
"""
import json
import os
import pathlib
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import run_speedrun, write_shard  # noqa: E402

try:
    import numpy as np
except ImportError as e:
    print(f"skipped: numpy is not available ({e}); run scripts/setup.sh", file=sys.stderr)
    sys.exit(77)

VOCAB = 256
ENV = {"OMP_NUM_THREADS": "1"}
WALL_CLOCK = {"train_time_s", "tokens_per_s"}


def tiny_config(tmp, steps, **train):
    return {
        "name": "ckpt",
        "model": {"n_layer": 2, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": 16,
                  "vocab_size": VOCAB, "padded_vocab_size": VOCAB},
        "data": {"train_glob": str(tmp / "data" / "t_train_*.bin"), "val_glob": str(tmp / "data" / "t_val_*.bin"),
                 "val_tokens": 64},
        "train": dict({"batch_tokens": 64, "micro_batch_seqs": 2, "steps": steps, "val_every": 3, "threads": 1,
                       "out_dir": str(tmp / "runs")}, **train),
        "schedule": {"warmup_steps": 2, "cooldown_frac": 0.5},
        "optimizers": [
            {"type": "adamw", "params": ["embed.weight", "proj.weight", "*.bias", "*.gains"], "lr": 0.01,
             "betas": [0.8, 0.95], "eps": 1e-10, "weight_decay": 0.01},
            {"type": "newton_muon", "params": ["blocks.*.attn.*.weight"], "lr": 0.02, "weight_decay": 0.025,
             "refresh_every": 3, "ema_beta": 0.3, "ridge": 0.2},
            {"type": "muon", "params": ["blocks.*.mlp.*.weight"], "lr": 0.02, "weight_decay": 0.025,
             "momentum_warmup_start": 0.85, "momentum_warmup_steps": 5},
        ],
    }


def load_params(run_dir):
    return {p.stem: np.load(p) for p in sorted((run_dir / "params").glob("*.npy"))}


def metrics(run_dir):
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        kept = {k: v for k, v in record.items() if k not in WALL_CLOCK}
        # How many collectives the polls saw complete during the backward depends on timing
        # (the MPI progress of the other rank); which ones started there does not.
        if isinstance(kept.get("grad_overlap"), dict):
            kept["grad_overlap"] = {k: v for k, v in kept["grad_overlap"].items() if k != "completed_in_backward"}
        out.append(kept)
    return out


def read_checkpoint(path):
    """The safetensors file with numpy alone: metadata and tensors, every CRC checked."""
    data = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__")
    crc = json.loads(meta["speedrun.crc32"])
    body = data[8 + n:]
    covered = 0
    tensors = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        covered += e - b
        assert zlib.crc32(body[b:e]) == crc[name], name
        tensors[name] = np.frombuffer(body[b:e], dtype={"F32": np.float32, "I64": np.int64}[t["dtype"]]).reshape(
            t["shape"])
    assert covered == len(body)
    return meta, tensors


class CheckpointTestCase(speedrun_testing.SpeedrunTestCase):
    def setUp(self):
        super().setUp()
        rng = random.Random(15)
        (self.tmp / "data").mkdir()
        write_shard(self.tmp / "data" / "t_train_000001.bin", [rng.randrange(VOCAB) for _ in range(20000)])
        write_shard(self.tmp / "data" / "t_val_000000.bin", [rng.randrange(VOCAB) for _ in range(100)])

    def config(self, steps, name="run.json", **train):
        path = self.tmp / name
        path.write_text(json.dumps(tiny_config(self.tmp, steps, **train)))
        return path

    def uninterrupted(self, cfg, name="straight", launcher=None):
        r = (launcher or run_speedrun)("train", cfg, "--run-name", name, "--save-params", "--no-progress", env=ENV)
        self.assertSucceeds(r)
        return self.tmp / "runs" / name

    def assertSameRun(self, got_dir, want_dir):
        want, got = load_params(want_dir), load_params(got_dir)
        self.assertGreater(len(want), 10)
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            self.assertTrue(np.array_equal(got[name], want[name]), f"{name}: max diff "
                            f"{np.max(np.abs(got[name] - want[name]))}")
        self.assertEqual(metrics(got_dir), metrics(want_dir))


class TestResume(CheckpointTestCase):
    def test_resume_from_an_earlier_checkpoint_is_bitwise(self):
        cfg = self.config(10, checkpoint_every=4)
        want = self.uninterrupted(cfg)
        run = self.uninterrupted(cfg, "run")
        names = sorted(p.name for p in (run / "checkpoints").iterdir())
        self.assertEqual(names, ["step_000004.safetensors", "step_000008.safetensors", "step_000010.safetensors"])
        meta, tensors = read_checkpoint(run / "checkpoints" / "step_000004.safetensors")
        self.assertEqual(meta["speedrun.format"], "speedrun-checkpoint/1")
        self.assertEqual(meta["speedrun.step"], "4")
        self.assertEqual(meta["speedrun.world_size"], "1")
        self.assertEqual(json.loads(meta["speedrun.config"])["train"]["steps"], 10)
        self.assertEqual(tensors["blocks.1.attn.q.weight"].shape, (32, 32))
        self.assertIn("optimizers.0.embed.weight.exp_avg_sq", tensors)
        self.assertIn("optimizers.1.blocks.0.attn_qkv.inverse", tensors)
        self.assertEqual(int(tensors["optimizers.1.refreshes"]), 1)
        self.assertIn("optimizers.2.blocks.0.mlp.fc.weight.momentum_buffer", tensors)
        # The final checkpoint ends the run: nothing to resume.
        r = run_speedrun("train", "--resume", run, env=ENV)
        self.assertFailsWith(r, "step_000010.safetensors", "nothing to resume")
        # From step 4 (no CONFIG: the checkpoint's), into the same run directory.
        r = run_speedrun("train", "--resume", run / "checkpoints" / "step_000004.safetensors", "--save-params",
                         "--no-progress", env=ENV)
        self.assertSucceeds(r)
        self.assertSameRun(run, want)
        log = (run / "log.txt").read_text()
        self.assertIn("resumed from", log)
        self.assertIn("at step 4", log)
        self.assertEqual(json.loads((run / "summary.json").read_text())["status"], "completed")

    def test_sigint_checkpoints_and_resumes_bitwise(self):
        cfg = self.config(300, val_every=100)
        want = self.uninterrupted(cfg)
        proc = subprocess.Popen([str(speedrun_testing.SPEEDRUN_BIN), "train", cfg, "--run-name", "run",
                                 "--no-progress"], env=dict(os.environ, **ENV), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        run = self.tmp / "runs" / "run"
        deadline = time.time() + 60
        while time.time() < deadline:
            m = run / "metrics.jsonl"
            if m.exists() and m.read_text().count("train_loss") >= 5:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 130, err)
        summary = json.loads((run / "summary.json").read_text())
        self.assertEqual(summary["status"], "interrupted")
        step = summary["steps"]
        self.assertLess(step, 300, "the run ended before the signal: lengthen it")
        self.assertTrue((run / "checkpoints" / f"step_{step:06d}.safetensors").exists())
        self.assertEqual(metrics(run)[-1]["step"], step)
        r = run_speedrun("train", "--resume", run, "--save-params", "--no-progress", env=ENV)
        self.assertSucceeds(r)
        self.assertSameRun(run, want)

    def test_stop_at_target_turned_on_at_a_resume_after_the_target_stops_at_once(self):
        # Issue 15: the target (val_loss <= 100: step 0's ln(VOCAB) already) was reached long
        # before the checkpoint; stop_at_target turned on at the resume stops the run there,
        # with nothing trained, the summary saying stopped_at_target at the first step at or
        # below the target.
        cfg = self.config(8, checkpoint_every=4, val_every=2, target_val_loss=100.0)
        run = self.uninterrupted(cfg, "run")
        ckpt = run / "checkpoints" / "step_000004.safetensors"
        # What the run logged up to the checkpoint (its step-4 validation came after it).
        before = [m for m in metrics(run) if m["step"] < 4 or (m["step"] == 4 and "val_loss" not in m)]
        r = run_speedrun("train", "--resume", ckpt, "--set", "train.stop_at_target=true", "--no-progress", env=ENV)
        self.assertSucceeds(r)
        summary = json.loads((run / "summary.json").read_text())
        self.assertEqual(summary["status"], "stopped_at_target")
        self.assertEqual(summary["steps"], 4)  # the checkpoint's: nothing trained
        self.assertEqual(summary["first_at_target"]["step"], 0)
        self.assertEqual(metrics(run), before)  # no step after the checkpoint's
        self.assertIn("already reached at step 0", (run / "log.txt").read_text())
        self.assertIn("stopped_at_target", r.stdout + r.stderr)
        self.assertFalse((run / "checkpoints" / "step_000008.safetensors").exists())  # set aside, none rewritten
        # Negative control: without stop_at_target the same resume trains to the end.
        r = run_speedrun("train", "--resume", ckpt, "--no-progress", env=ENV)
        self.assertSucceeds(r)
        summary = json.loads((run / "summary.json").read_text())
        self.assertEqual((summary["status"], summary["steps"]), ("completed", 8))
        # A target first reached after the checkpoint still stops where the loop finds it:
        # the step-4 validation (the checkpoint's step) is the first at or below this one.
        target = [m["val_loss"] for m in metrics(run) if m.get("step") == 4 and "val_loss" in m][0]
        r = run_speedrun("train", "--resume", ckpt, "--set", "train.stop_at_target=true", "--set",
                         f"train.target_val_loss={target}", "--no-progress", env=ENV)
        self.assertSucceeds(r)
        summary = json.loads((run / "summary.json").read_text())
        self.assertEqual((summary["status"], summary["steps"], summary["first_at_target"]["step"]),
                         ("stopped_at_target", 4, 4))

    def test_the_resumed_checkpoint_is_not_kept_mapped(self):
        # Issue 15: the checkpoint a run resumed from is read, then unmapped: a long run does
        # not hold it (nor its pages) to its end. /proc/<pid>/maps of the running resume lists
        # every file it maps: the binary (the check's positive control), not the checkpoint.
        cfg = self.config(300, checkpoint_every=2, val_every=100)
        self.uninterrupted(cfg, "run")
        ckpt = self.tmp / "runs" / "run" / "checkpoints" / "step_000002.safetensors"
        proc = subprocess.Popen([str(speedrun_testing.SPEEDRUN_BIN), "train", "--resume", ckpt, "--no-progress",
                                 "--set", "train.checkpoint_every=0"], env=dict(os.environ, **ENV),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        run = self.tmp / "runs" / "run"
        # The resume logs "resumed from ..." once the checkpoint is loaded (and released); the
        # uninterrupted run's metrics.jsonl already holds steps past 4, so it cannot say when.
        # The process is stopped while its mappings are read, so it cannot be exiting then.
        maps, alive = "", False
        try:
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None:
                log = run / "log.txt"
                if log.exists() and "resumed from" in log.read_text():
                    break
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGSTOP)
                alive = proc.poll() is None
                if alive:
                    maps = pathlib.Path(f"/proc/{proc.pid}/maps").read_text()
        finally:
            proc.kill()
            _, err = proc.communicate(timeout=60)
        self.assertTrue(alive, f"the resume ended before its mappings were read (exit {proc.returncode}): {err[-2000:]}")
        self.assertIn(os.path.realpath(speedrun_testing.SPEEDRUN_BIN), maps)
        self.assertNotIn("step_000002.safetensors", maps)

    def test_refusals(self):
        cfg = self.config(6, checkpoint_every=3)
        run = self.uninterrupted(cfg, "run")
        ckpt = run / "checkpoints" / "step_000003.safetensors"
        # Model, data and optimizer keys differ: refused, naming every key.
        r = run_speedrun("train", "--resume", ckpt, "--set", "optimizers[0].lr=0.02", "--set", "model.n_layer=3",
                         env=ENV)
        self.assertFailsWith(r, "optimizers[0].lr", "model.n_layer", "cannot resume")
        r = run_speedrun("train", cfg, "--resume", ckpt, "--set", "train.steps=7", env=ENV)
        self.assertFailsWith(r, "train.steps")
        # Safe keys may change.
        r = run_speedrun("train", "--resume", ckpt, "--set", "train.val_every=1", "--set", "train.checkpoint_every=0",
                         "--no-progress", env=ENV)
        self.assertSucceeds(r)
        # The new cadence from step 3 on: validations at 3, 4, 5, 6 (the old one had 3 and 6).
        self.assertEqual([m["step"] for m in metrics(run) if "val_loss" in m], [0, 3, 4, 5, 6])
        # --resume with --run-name is a usage error; no CONFIG and no --resume too.
        self.assertEqual(run_speedrun("train", "--resume", run, "--run-name", "x").returncode, 2)
        self.assertEqual(run_speedrun("train").returncode, 2)
        r = run_speedrun("train", "--resume", self.tmp / "nowhere")
        self.assertFailsWith(r, "nowhere", "no such checkpoint")

    def test_a_kill_after_the_final_checkpoint_is_finished_by_resume(self):
        """A kill between the final checkpoint and summary.json (a narrow window, which the
        kill -9 test hits now and then) leaves a run whose training is done but whose end is
        unwritten: --resume writes it (parameters, status, summary) without training, and
        the run equals the uninterrupted one. With summary.json there, nothing to resume."""
        cfg = self.config(6, checkpoint_every=3, val_every=2)
        want = self.uninterrupted(cfg)
        run = self.uninterrupted(cfg, "run")
        final = run / "checkpoints" / "step_000006.safetensors"
        r = run_speedrun("train", "--resume", run, env=ENV)
        self.assertFailsWith(r, str(final), "nothing to resume")
        # What a kill right after the final checkpoint leaves: no summary, no parameters.
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").unlink()
        shutil.rmtree(run / "params")
        r = run_speedrun("train", "--resume", run, "--save-params", "--no-progress", env=ENV)
        self.assertSucceeds(r)
        self.assertSameRun(run, want)  # parameters and every metrics record, the final validation kept
        got = json.loads((run / "summary.json").read_text())
        for key in ("status", "steps", "final_val_loss", "val", "first_at_target"):
            self.assertEqual(got[key], summary[key], key)
        self.assertIn("writing the run's end", (run / "log.txt").read_text())

    def test_resume_from_an_earlier_checkpoint_sets_the_later_ones_aside(self):
        """The checkpoints after the resumed one belong to the replaced trajectory: moved to
        checkpoints/superseded-after-step_N/, so that the newest checkpoint (--resume RUN_DIR,
        sample, keep_checkpoints) is the resumed run's. A target set at the resume finds its
        first step in the validations before the checkpoint too."""
        cfg = self.config(6, checkpoint_every=2, val_every=2)
        run = self.uninterrupted(cfg, "run")
        val0 = next(r["val_loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                    if r["step"] == 0 and "val_loss" in r)
        r = run_speedrun("train", "--resume", run / "checkpoints" / "step_000002.safetensors", "--no-progress",
                         "--set", f"train.target_val_loss={val0 + 1e-3}", env=ENV)
        self.assertSucceeds(r)
        aside = run / "checkpoints" / "superseded-after-step_000002"
        self.assertEqual(sorted(p.name for p in aside.iterdir()),
                         ["step_000004.safetensors", "step_000006.safetensors"])
        self.assertEqual(sorted(p.name for p in (run / "checkpoints").glob("step_*.safetensors")),
                         ["step_000002.safetensors", "step_000004.safetensors", "step_000006.safetensors"])
        # Step 0's validation (before the checkpoint) is the first at the new target.
        self.assertEqual(json.loads((run / "summary.json").read_text())["first_at_target"]["step"], 0)

    def test_a_run_still_training_is_not_resumed_under_it(self):
        cfg = self.config(50000, checkpoint_every=1, val_every=50000)
        run = self.tmp / "runs" / "live"
        proc = subprocess.Popen([str(speedrun_testing.SPEEDRUN_BIN), "train", str(cfg), "--run-name", "live",
                                 "--no-progress", "--set", "data.epochs=200"], env=dict(os.environ, **ENV),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while not list((run / "checkpoints").glob("step_*.safetensors")) and time.time() < deadline:
                self.assertIsNone(proc.poll(), "the run to resume under ended early")
                time.sleep(0.05)
            metrics_before = (run / "metrics.jsonl").stat().st_size
            r = run_speedrun("train", "--resume", run, env=ENV)
            self.assertFailsWith(r, "still being trained", str(run / "log.txt"))
            self.assertIsNone(proc.poll())  # the live run goes on, its metrics untouched
            self.assertGreaterEqual((run / "metrics.jsonl").stat().st_size, metrics_before)
        finally:
            proc.kill()
            proc.wait()

    def test_truncated_or_corrupted_checkpoint_is_refused_naming_the_file(self):
        cfg = self.config(4, checkpoint_every=2)
        run = self.uninterrupted(cfg, "run")
        good = (run / "checkpoints" / "step_000002.safetensors").read_bytes()
        bad = run / "checkpoints" / "step_000002.safetensors"
        for what, data in (("truncated", good[:len(good) // 2]), ("flipped", good[:-9] + bytes([good[-9] ^ 1]) + good[-8:]),
                           ("empty", b""), ("header cut", good[:6])):
            with self.subTest(what=what):
                bad.write_bytes(data)
                r = run_speedrun("train", "--resume", bad, env=ENV)
                self.assertFailsWith(r, str(bad))
        bad.write_bytes(good)  # negative control: the intact file resumes
        self.assertSucceeds(run_speedrun("train", "--resume", bad, "--no-progress", env=ENV))


class TestKillNine(CheckpointTestCase):
    def test_sigkill_while_writing_checkpoints(self):
        """SIGKILL at random moments of a run that checkpoints every step: after each kill
        every file under a checkpoint's name is whole (all CRCs), and resuming from the
        newest one, again and again, ends bitwise equal to the uninterrupted run."""
        cfg = self.config(80, checkpoint_every=1, keep_checkpoints=3, val_every=5)
        want = self.uninterrupted(cfg)
        run = self.tmp / "runs" / "run"
        rng = random.Random(int(os.environ.get("SPEEDRUN_TEST_SEED", "4")))
        kills, temporaries = 0, set()

        def newest():
            steps = [int(p.name[5:11]) for p in (run / "checkpoints").glob("step_*.safetensors")] \
                if (run / "checkpoints").exists() else []
            return max(steps, default=-1)

        for attempt in range(6):
            if (run / "summary.json").exists():
                break  # a kill came after the run had finished: nothing left to resume
            start = newest()
            args = ["--resume", run] if start >= 0 else [cfg, "--run-name", "run", "--force"]
            with open(self.tmp / "stderr.txt", "w") as err:
                proc = subprocess.Popen([str(speedrun_testing.SPEEDRUN_BIN), "train", *map(str, args),
                                         "--no-progress"], env=dict(os.environ, **ENV), stdout=subprocess.DEVNULL,
                                        stderr=err)
            # Once this process has written a checkpoint of its own (however slow its
            # start on a loaded machine), a random moment within the next few steps.
            deadline = time.time() + 120
            while proc.poll() is None and newest() <= start and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is not None:
                self.assertEqual(proc.returncode, 0, (self.tmp / "stderr.txt").read_text())
                break
            proc.kill()
            proc.wait()
            kills += 1
            temporaries.update(p.name for p in (run / "checkpoints").glob(".*")
                               if speedrun_testing.TEMPORARY_NAME.match(p.name))
            for path in (run / "checkpoints").glob("step_*.safetensors"):
                read_checkpoint(path)  # whole, or it would not be under this name
            # keep_checkpoints 3: a kill between a write and the removal of the oldest leaves 4.
            self.assertLessEqual(len(list((run / "checkpoints").glob("step_*.safetensors"))), 4)
        self.assertGreater(kills, 0)
        if not (run / "summary.json").exists():
            self.assertSucceeds(run_speedrun("train", "--resume", run, "--no-progress", env=ENV))
        self.assertSucceeds(run_speedrun("train", "--resume", run / "checkpoints" / "step_000079.safetensors",
                                         "--save-params", "--no-progress", env=ENV))
        # The resumes removed what the killed writers left.
        self.assertEqual([p.name for p in (run / "checkpoints").glob(".*")], [])
        print(f"\nkill -9: {kills} kill(s), {len(temporaries)} left a checkpoint's temporary (killed mid-write)",
              file=sys.stderr)
        self.assertSameRun(run, want)


MPIRUN = shutil.which("mpirun")
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_btl_vader_single_copy_mechanism": "none", "OMP_NUM_THREADS": "1"}


def mpirun2(*args, env=None, timeout=300):
    cmd = [MPIRUN, "--oversubscribe", "--bind-to", "none", "-np", "2", str(speedrun_testing.SPEEDRUN_BIN),
           *map(str, args)]
    return subprocess.run(cmd, env=dict(os.environ, **MPI_ENV), timeout=timeout, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


class TestMpiResume(CheckpointTestCase):
    def setUp(self):
        if MPIRUN is None:
            self.skipTest("skipped: mpirun is not installed")
        super().setUp()

    def test_two_ranks_resume_bitwise_and_from_one_rank(self):
        cfg = self.config(8, checkpoint_every=3)
        want = self.uninterrupted(cfg, "np2-straight", launcher=mpirun2)
        run = self.uninterrupted(cfg, "np2", launcher=mpirun2)
        meta, tensors = read_checkpoint(run / "checkpoints" / "step_000003.safetensors")
        self.assertEqual(meta["speedrun.world_size"], "2")
        # Rank 0's file holds the whole (gathered) optimizer state.
        self.assertEqual(tensors["optimizers.0.embed.weight.exp_avg"].shape, (VOCAB, 32))
        r = mpirun2("train", "--resume", run / "checkpoints" / "step_000003.safetensors", "--save-params",
                    "--no-progress")
        self.assertSucceeds(r)
        self.assertSameRun(run, want)
        # A one-process checkpoint continues under two ranks: re-sharded, close to the
        # two-rank run (fp32 reduction order only; see test_mpi.py for the tolerance).
        one = self.uninterrupted(cfg, "np1")
        r = mpirun2("train", "--resume", one / "checkpoints" / "step_000003.safetensors", "--save-params",
                    "--no-progress")
        self.assertSucceeds(r)
        self.assertIn("re-sharded", r.stderr)
        got = load_params(one)
        for name, w in load_params(want).items():
            np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=2e-5, err_msg=name)

    def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step(self):
        cfg = self.config(300, val_every=100)
        want = self.uninterrupted(cfg, "np2-straight", launcher=mpirun2)
        proc = subprocess.Popen([MPIRUN, "--oversubscribe", "--bind-to", "none", "-np", "2",
                                 str(speedrun_testing.SPEEDRUN_BIN), "train", str(cfg), "--run-name", "run",
                                 "--no-progress"], env=dict(os.environ, **MPI_ENV), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        run = self.tmp / "runs" / "run"
        deadline = time.time() + 60
        while time.time() < deadline:
            m = run / "metrics.jsonl"
            if m.exists() and m.read_text().count("train_loss") >= 5:
                break
            time.sleep(0.01)
        ranks = subprocess.run(["pgrep", "-P", str(proc.pid)], stdout=subprocess.PIPE, text=True).stdout.split()
        self.assertEqual(len(ranks), 2, ranks)
        os.kill(int(ranks[-1]), signal.SIGTERM)  # one rank only: the other learns it at the step's end
        out, err = proc.communicate(timeout=120)
        self.assertNotEqual(proc.returncode, 0, err)
        summary = json.loads((run / "summary.json").read_text())
        self.assertEqual(summary["status"], "interrupted")
        step = summary["steps"]
        self.assertLess(step, 300, "the run ended before the signal: lengthen it")
        self.assertEqual(metrics(run)[-1]["step"], step)
        r = mpirun2("train", "--resume", run, "--save-params", "--no-progress")
        self.assertSucceeds(r)
        self.assertSameRun(run, want)


if __name__ == "__main__":
    speedrun_testing.main()
