"""`speedrun sample` and `speedrun eval` from the command line, on checkpoints written by
tests/python/checkpoint_files.py (the contract of src/model/model_file.h) from a tiny run's
--save-params output or from fresh random weights: eval reproduces the run's final
val_loss exactly, sampling is deterministic per seed, and every bad checkpoint, prompt or
option gives a clear error (exit 1) or the usage (exit 2)."""
import json
import os
import random
import resource
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import run_speedrun, write_shard  # noqa: E402

try:
    import numpy as np
except ImportError as e:  # pragma: no cover
    print(f"skipped: numpy not available ({e}); run scripts/setup.sh", file=sys.stderr)
    sys.exit(77)

import checkpoint_files  # noqa: E402


def tiny_config(train_glob, val_glob, out_dir):
    return {
        "name": "tiny",
        "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": 16},
        "data": {"train_glob": train_glob, "val_glob": val_glob, "val_tokens": 64},
        "train": {"batch_tokens": 64, "micro_batch_seqs": 2, "steps": 6, "val_every": 3, "threads": 2,
                  "out_dir": out_dir},
        "optimizers": [
            {"type": "adamw", "params": ["embed.weight", "proj.weight", "*.bias", "*.gains"], "lr": 0.01,
             "betas": [0.8, 0.95], "eps": 1e-10},
            {"type": "muon", "params": ["blocks.*.weight"], "lr": 0.02},
        ],
    }


class CheckpointTestCase(speedrun_testing.SpeedrunTestCase):
    def setUp(self):
        super().setUp()
        self.seed = checkpoint_files.test_seed()
        print(f"seed {self.seed} (SPEEDRUN_TEST_SEED replays it)")
        self.rng = np.random.default_rng(self.seed)

    def make_data(self, train_tokens=2000, val_tokens=300):
        rng = random.Random(self.seed)
        (self.tmp / "data").mkdir(exist_ok=True)
        write_shard(self.tmp / "data" / "t_train_000001.bin", [rng.randrange(50257) for _ in range(train_tokens)])
        write_shard(self.tmp / "data" / "t_val_000000.bin", [rng.randrange(50257) for _ in range(val_tokens)])
        return str(self.tmp / "data" / "t_train_*.bin"), str(self.tmp / "data" / "t_val_*.bin")

    def train_tiny(self):
        """A finished tiny run with --save-params and its checkpoint; returns (run_dir, val_glob)."""
        train_glob, val_glob = self.make_data()
        cfg = self.tmp / "tiny.json"
        cfg.write_text(json.dumps(tiny_config(train_glob, val_glob, str(self.tmp / "runs"))))
        r = run_speedrun("train", cfg, "--run-name", "tiny", "--save-params", "--no-progress", "--device", "cpu")
        self.assertSucceeds(r)
        run_dir = self.tmp / "runs" / "tiny"
        checkpoint_files.write_checkpoint_from_params(run_dir)
        return run_dir, val_glob

    def random_checkpoint(self, path, **model):
        """A checkpoint of fresh random weights for the tiny config with `model` changes."""
        cfg = tiny_config("/x/t_*.bin", "/x/v_*.bin", str(self.tmp / "runs"))
        # The resolved config, as a run directory's config.json holds it.
        cfg_path = self.tmp / "cfg.json"
        cfg["model"].update(model)
        seq = cfg["model"]["seq_len"]  # batches and validation of whole sequences
        cfg["train"]["batch_tokens"], cfg["data"]["val_tokens"] = 4 * seq, 4 * seq
        cfg_path.write_text(json.dumps(cfg))
        r = run_speedrun("validate-config", cfg_path)
        resolved = json.loads(r.stdout) if r.returncode == 0 else None
        self.assertIsNotNone(resolved, r.stderr)
        params = checkpoint_files.random_params(resolved["model"], self.rng)
        return checkpoint_files.write_checkpoint(path, resolved, params, 42)

    def check_bad_checkpoints(self, args, good):
        """Every broken form of `good`, each refused naming the file (exit 1)."""
        data = good.read_bytes()
        cases = {
            "truncated.safetensors": (data[:len(data) - 100], "not a complete safetensors file"),
            "short.safetensors": (data[:5], "shorter than the 8-byte header length"),
            "flipped.safetensors": (data[:-7] + bytes([data[-7] ^ 0x10]) + data[-6:], "is corrupted"),
            "text.safetensors": (b"hello world, not a checkpoint at all", "not a complete safetensors file"),
        }
        for name, (content, fragment) in cases.items():
            with self.subTest(name):
                (self.tmp / name).write_bytes(content)
                self.assertFailsWith(run_speedrun(args[0], self.tmp / name, *args[1:]), str(self.tmp / name), fragment)
        tensors, meta = checkpoint_files.safetensors_numpy.read_safetensors(good)
        config = json.loads(meta["speedrun.config"])
        params = dict(tensors)
        del params["blocks.0.mlp.fc.weight"]
        path = self.tmp / "missing_param.safetensors"
        names = [n for n in checkpoint_files.parameter_names(config["model"]) if n != "blocks.0.mlp.fc.weight"]
        checkpoint_files.atomic_write.write_atomically(path, checkpoint_files.safetensors_numpy.safetensors_bytes(
            {n: params[n] for n in names}, meta | {}))
        self.assertFailsWith(run_speedrun(args[0], path, *args[1:]), str(path),
                             "1 of the model's 19 parameters are missing: blocks.0.mlp.fc.weight")
        params = dict(tensors)
        params["blocks.0.attn.q.weight"] = params["blocks.0.attn.q.weight"].T.copy()[:, :16]
        path = checkpoint_files.write_checkpoint(self.tmp / "shape.safetensors", config, params, 1)
        self.assertFailsWith(run_speedrun(args[0], path, *args[1:]), str(path),
                             "tensor blocks.0.attn.q.weight is F32 [32, 16], expected F32 [32, 32]")
        no_format = {k: v for k, v in meta.items() if k not in ("speedrun.format", "speedrun.crc32")}
        path = self.tmp / "noformat.safetensors"
        checkpoint_files.atomic_write.write_atomically(
            path, checkpoint_files.safetensors_numpy.safetensors_bytes(tensors, no_format))
        self.assertFailsWith(run_speedrun(args[0], path, *args[1:]), str(path), "not a speedrun checkpoint")


class TestEval(CheckpointTestCase):
    def test_eval_reproduces_the_runs_final_val_loss(self):
        run_dir, val_glob = self.train_tiny()
        summary = json.loads((run_dir / "summary.json").read_text())
        r = run_speedrun("eval", run_dir, "--data", val_glob, "--json", "--device", "cpu")
        self.assertSucceeds(r)
        out = json.loads(r.stdout)
        # Bitwise: the same parameters, sequences, micro-batches, ops and thread count as the
        # run's last validation, and both numbers printed round-trip.
        self.assertEqual(out["val_loss"], summary["final_val_loss"])
        self.assertEqual(out["tokens"], 64)
        self.assertEqual(out["step"], 6)
        self.assertTrue(out["checkpoint"].endswith("checkpoints/step_000006.safetensors"), out)
        # The plain form, and the checkpoint named as a file.
        r = run_speedrun("eval", out["checkpoint"], "--data", val_glob, "--device", "cpu")
        self.assertSucceeds(r)
        self.assertRegex(r.stdout, r"^val_loss \d+\.\d{6} on 64 tokens of ")
        self.assertAlmostEqual(float(r.stdout.split()[1]), summary["final_val_loss"], places=6)
        # One sequence per forward: the same losses summed in another grouping, equal to rounding.
        r = run_speedrun("eval", run_dir, "--data", val_glob, "--json", "--batch-seqs", "1", "--device", "cpu")
        self.assertSucceeds(r)
        one = json.loads(r.stdout)
        self.assertEqual(one["micro_batch_seqs"], 1)
        self.assertAlmostEqual(one["val_loss"], summary["final_val_loss"], delta=1e-6 * summary["final_val_loss"])
        # Other tokens: the first 32 only, a different value.
        r = run_speedrun("eval", run_dir, "--data", val_glob, "--json", "--tokens", "32", "--device", "cpu")
        self.assertSucceeds(r)
        self.assertEqual(json.loads(r.stdout)["tokens"], 32)
        # Negative control: one gain changed by 0.1% gives another loss (the equality above is
        # not a property of any checkpoint).
        tensors, meta = checkpoint_files.safetensors_numpy.read_safetensors(out["checkpoint"])
        params = {k: v.copy() for k, v in tensors.items()}
        params["norm2.gains"] *= np.float32(1.001)
        other = checkpoint_files.write_checkpoint(self.tmp / "other.safetensors",
                                                  json.loads(meta["speedrun.config"]), params, 6)
        r = run_speedrun("eval", other, "--data", val_glob, "--json", "--device", "cpu")
        self.assertSucceeds(r)
        self.assertNotEqual(json.loads(r.stdout)["val_loss"], summary["final_val_loss"])

    def test_bad_input(self):
        ckpt = self.random_checkpoint(self.tmp / "c.safetensors")
        _, val_glob = self.make_data()
        self.assertFailsWith(run_speedrun("eval", ckpt), "--data is required", "Usage", code=2)
        self.assertFailsWith(run_speedrun("eval", "--data", val_glob), "checkpoint is required", code=2)
        self.assertFailsWith(run_speedrun("eval", ckpt, "--data", val_glob, "--tokens", "0"), "--tokens", code=2)
        self.assertFailsWith(run_speedrun("eval", ckpt, "--data", val_glob, "--device", "tpu"), "--device", code=2)
        self.assertFailsWith(run_speedrun("eval", ckpt, "--data", val_glob, "--tokens", "40", "--device", "cpu"),
                             "--tokens 40 is not a multiple of model.seq_len = 16", str(ckpt))
        self.assertFailsWith(run_speedrun("eval", ckpt, "--data", val_glob, "--tokens", "320", "--device", "cpu"),
                             "--data", "hold 300 tokens", "lower --tokens")
        self.assertFailsWith(run_speedrun("eval", ckpt, "--data", str(self.tmp / "none_*.bin"), "--device", "cpu"),
                             "--data", "none_*.bin")
        self.assertFailsWith(run_speedrun("eval", self.tmp / "missing", "--data", val_glob),
                             str(self.tmp / "missing"), "does not exist")
        (self.tmp / "run" / "checkpoints").mkdir(parents=True)
        self.assertFailsWith(run_speedrun("eval", self.tmp / "run", "--data", val_glob),
                             "checkpoints holds no checkpoint")
        self.check_bad_checkpoints(["eval", "--data", val_glob, "--device", "cpu"], ckpt)

class TestSample(CheckpointTestCase):
    def sample(self, ckpt, *args):
        r = run_speedrun("sample", ckpt, "--json", "--device", "cpu", *args)
        self.assertSucceeds(r)
        return json.loads(r.stdout)

    def test_same_seed_same_text(self):
        ckpt = self.random_checkpoint(self.tmp / "c.safetensors")
        seed = str(self.rng.integers(1 << 62))
        a = self.sample(ckpt, "--prompt", "The quick brown fox", "--tokens", "40", "--seed", seed, "--temperature", "1")
        b = self.sample(ckpt, "--prompt", "The quick brown fox", "--tokens", "40", "--seed", seed, "--temperature", "1")
        self.assertEqual(a["tokens"], b["tokens"])
        self.assertEqual(a["text"], b["text"])
        self.assertEqual(len(a["tokens"]), 40)
        self.assertEqual(a["prompt_tokens"], [464, 2068, 7586, 21831])  # GPT-2's ids of the prompt
        # 40 tokens through a 16-token context: the context was read again several times.
        self.assertGreaterEqual(a["context_reads"], 4)
        c = self.sample(ckpt, "--prompt", "The quick brown fox", "--tokens", "40", "--seed", str(int(seed) + 1),
                        "--temperature", "1")
        self.assertNotEqual(a["tokens"], c["tokens"])  # negative control: the seed matters
        # Greedy ignores the seed; top-k 1 is greedy.
        g1 = self.sample(ckpt, "--prompt", "x", "--tokens", "20", "--temperature", "0", "--seed", "1")
        g2 = self.sample(ckpt, "--prompt", "x", "--tokens", "20", "--temperature", "0", "--seed", "2")
        k1 = self.sample(ckpt, "--prompt", "x", "--tokens", "20", "--top-k", "1", "--seed", "3")
        self.assertEqual(g1["tokens"], g2["tokens"])
        self.assertEqual(g1["tokens"], k1["tokens"])
        # Plain output: the prompt and the same text, streamed; the speed on stderr.
        r = run_speedrun("sample", ckpt, "--prompt", "The quick brown fox", "--tokens", "40", "--seed", seed,
                         "--temperature", "1", "--device", "cpu")
        self.assertSucceeds(r)
        self.assertEqual(r.stdout, "The quick brown fox" + a["text"] + "\n")
        self.assertRegex(r.stderr, r"40 tokens in \d+\.\d+ s: \d+ tokens/s")
        # An empty prompt starts from <|endoftext|>.
        e = self.sample(ckpt, "--prompt", "", "--tokens", "5")
        self.assertEqual(e["prompt_tokens"], [50256])

    def test_logits_out(self):
        ckpt = self.random_checkpoint(self.tmp / "c.safetensors")
        out = self.tmp / "logits.npy"
        s = self.sample(ckpt, "--prompt", "Hello", "--tokens", "6", "--temperature", "0", "--logits-out", out)
        logits = np.load(out)
        self.assertEqual(logits.shape, (6, 50304))
        self.assertEqual(list(np.argmax(logits[:, :50257], axis=1)), s["tokens"])  # greedy: the argmax

    def test_bad_input(self):
        ckpt = self.random_checkpoint(self.tmp / "c.safetensors")
        usage = [
            ([ckpt], "--prompt is required"),
            (["--prompt", "x"], "checkpoint is required"),
            ([ckpt, "--prompt", "x", "--temperature", "-1"], "--temperature"),
            ([ckpt, "--prompt", "x", "--top-k", "-1"], "--top-k"),
            ([ckpt, "--prompt", "x", "--tokens", "0"], "--tokens"),
            ([ckpt, "--prompt", "x", "--seed", "abc"], "--seed"),
            ([ckpt, "--prompt", "x", "--device", "gpu"], "--device"),
            ([ckpt, "--prompt", "x", "--bogus"], "--bogus"),
        ]
        for args, fragment in usage:
            with self.subTest(args=args):
                self.assertFailsWith(run_speedrun("sample", *args), fragment, code=2)
        self.assertFailsWith(run_speedrun("sample", ckpt, "--prompt", "x", "--device", "cuda"),
                             "sample runs on the CPU", "--device cpu")
        self.assertFailsWith(run_speedrun("sample", ckpt, "--prompt", "x", "--tokens", "30000", "--logits-out",
                                          self.tmp / "l.npy"), "--logits-out", "more than 4 GiB")
        self.assertFalse((self.tmp / "l.npy").exists())
        small = self.random_checkpoint(self.tmp / "small.safetensors", vocab_size=300, padded_vocab_size=320)
        self.assertFailsWith(run_speedrun("sample", small, "--prompt", "Hello world", "--device", "cpu"),
                             "--prompt", "token 15496 ('Hello')", "model.vocab_size = 300", str(small))
        # The same model samples from a prompt of small ids, and never draws an id >= 300.
        s = self.sample(small, "--prompt", "#", "--tokens", "30", "--temperature", "2")
        self.assertTrue(all(t < 300 for t in s["tokens"]), s["tokens"])
        self.check_bad_checkpoints(["sample", "--prompt", "x", "--device", "cpu"], ckpt)
        self.assertFailsWith(run_speedrun("sample", self.tmp / "missing", "--prompt", "x"), "does not exist")

    def test_speed_of_the_quickstart_sized_model(self):
        # The quickstart's shape (configs/quickstart.json: 2 layers, d=128, 2 x 64 heads, 128-token
        # context, the 50304-row head) with random weights: 256 tokens, on the one thread sample
        # picks for a model this small (threads cost more than they give). Judged by the
        # CPU time the process used (the wall time on a shared machine measures its load): a few
        # seconds at most, startup and the tokenizer's loading included.
        ckpt = self.random_checkpoint(self.tmp / "q.safetensors", n_layer=2, d_model=128, n_head=2, head_dim=64,
                                      seq_len=128)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        s = self.sample(ckpt, "--prompt", "It was a", "--tokens", "256")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"quickstart-sized model: 256 tokens, decoding {s['seconds']:.3f} s wall ({s['tokens_per_s']:.0f} "
              f"tokens/s, {s['context_reads']} context reads); the whole process used {cpu:.2f} s of CPU")
        self.assertEqual(len(s["tokens"]), 256)
        self.assertEqual(s["threads"], 1)
        self.assertLess(cpu, 5.0)

if __name__ == "__main__":
    speedrun_testing.main()
