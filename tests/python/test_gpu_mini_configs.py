"""configs/gpu-mini-*.json (issue 18: the optimizer comparison sized for one H200) on the
CPU, as CI can: each validates, and trains two steps of one 1024-token sequence from the
embedded data (the configs' own model, optimizers and data; only the batch, the step count
and the validation set are shrunk) to a finite loss below the initial one. The four
differ only in the block matrices' optimizer; the GPU comparison itself runs in
scripts/gpu_compare.sh on a GPU."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import run_speedrun  # noqa: E402

CONFIGS = speedrun_testing.SOURCE_DIR / "configs"
FAMILY = {"adamw": "adamw", "muon": "muon", "newton-muon": "newton_muon", "rmnp": "rmnp"}


class GpuMiniConfigs(speedrun_testing.SpeedrunTestCase):
    def load(self, name):
        return json.loads((CONFIGS / f"gpu-mini-{name}.json").read_text())

    def test_family_is_one_architecture_and_four_optimizers(self):
        base = self.load("muon")
        for name, opt_type in FAMILY.items():
            cfg = self.load(name)
            self.assertEqual(cfg["model"], base["model"], name)
            self.assertEqual(cfg["data"], base["data"], name)
            self.assertEqual(cfg["train"], base["train"], name)
            self.assertEqual(cfg["optimizers"][-1]["type"], opt_type, name)
            self.assertEqual(cfg["optimizers"][-1]["params"], ["blocks.*.weight"], name)
            # Track 3's architecture: head_dim 128, seq 1024, the padded GPT-2 vocabulary.
            self.assertEqual((cfg["model"]["head_dim"], cfg["model"]["seq_len"]), (128, 1024))
            self.assertEqual(cfg["model"]["padded_vocab_size"], 50304)
            self.assertIn("ESTIMATE", cfg["description"])  # until a GPU run measures it
            self.assertGreater(cfg["train"]["target_val_loss"], 0)
            self.assertIn("data/sotu", cfg["data"]["train_glob"])  # data that travels with the project

    def test_each_validates_and_trains_two_steps_on_the_cpu(self):
        for name in FAMILY:
            path = CONFIGS / f"gpu-mini-{name}.json"
            r = run_speedrun("validate-config", path)
            self.assertEqual(r.returncode, 0, f"{name}\n{r.stdout}\n{r.stderr}")
            self.assertNotIn("warning", r.stderr.lower(), name)  # enough data for every step
            r = run_speedrun("train", path, "--device", "cpu", "--out-dir", self.tmp, "--run-name", name,
                             "--no-progress", "--set", "train.steps=2", "--set", "train.batch_tokens=1024",
                             "--set", "train.micro_batch_seqs=1", "--set", "train.val_every=2",
                             "--set", "train.val_every_final=2", "--set", "data.val_tokens=2048",
                             "--set", "train.threads=2", timeout=900)
            self.assertEqual(r.returncode, 0, f"{name}\n{r.stdout}\n{r.stderr}")
            points = [json.loads(line) for line in (self.tmp / name / "metrics.jsonl").read_text().splitlines()]
            val = [p["val_loss"] for p in points if "val_loss" in p]
            self.assertGreaterEqual(len(val), 2, name)
            self.assertTrue(all(math.isfinite(v) for v in val), val)
            self.assertLess(val[-1], val[0], f"{name}: {val}")


if __name__ == "__main__":
    speedrun_testing.main()
