"""What a training step's gradient is, per architecture (model::gradient_scale), seen through
`speedrun train`: track3's is the gradient of the loss SUMMED over the global batch
(model-track3.md); record26's is upstream's, each rank's summed loss averaged over the ranks
(train_gpt.py: reduction="sum", then reduce_scatter with ReduceOp.AVG), which we take as the
mean over the batch's sequences of their summed losses, whatever the rank count.

The probe: every training sequence is the same (a period-8 token pattern, sequences of 16),
so a batch of 4 sequences sums twice the gradient of a batch of 2, and AdamW with eps 1e6 and
lr 1e6 makes a step's change its bias-corrected first moment (lr m / (sqrt(v) + eps) = m (1 -
O(|g|/1e6))), linear in the gradients. Record26: the 2- and 4-sequence runs change every
parameter the same over two steps (the mean); track3 (the negative control, and the spec's
sum): the 4-sequence run's first step changes every parameter twice as much.
The mpirun equivalences (1 vs 2 ranks) are in test_mpi_overlap.py."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import run_speedrun, write_shard  # noqa: E402

try:
    import numpy as np
except ImportError as e:  # pragma: no cover
    print(f"skipped: numpy is not available ({e})", file=sys.stderr)
    sys.exit(77)

VOCAB = 64
PATTERN = [5, 17, 9, 33, 2, 41, 28, 12]


def config(arch, sequences, lr, steps):
    model = {"arch": arch, "vocab_size": VOCAB, "padded_vocab_size": VOCAB, "d_model": 32, "n_head": 2,
             "head_dim": 16, "seq_len": 16}
    if arch == "record26":
        model.update({"n_layer": 6, "doc_separator": VOCAB - 1, "attn_block_size": 8, "window_tokens": 16,
                      "window_pattern": "LSSSSL", "logit_softcap": "sigmoid", "logit_cap": 30})
    else:
        model["n_layer"] = 1
    return {
        "name": f"{arch}-{sequences}",
        "model": model,
        "data": {"train_glob": "data/train_*.bin", "val_glob": "data/val_*.bin", "val_tokens": 16},
        "train": {"batch_tokens": 16 * sequences, "micro_batch_seqs": 1, "steps": steps, "val_every": steps, "threads": 1},
        "optimizers": [{"type": "adamw", "params": ["*"], "lr": lr, "betas": [0.8, 0.95], "eps": 1e6,
                        "weight_decay": 0.0}],
    }


class TestGradientScale(speedrun_testing.SpeedrunTestCase):
    def setUp(self):
        super().setUp()
        (self.tmp / "data").mkdir()
        write_shard(self.tmp / "data" / "train_000001.bin", PATTERN * 64)
        write_shard(self.tmp / "data" / "val_000000.bin", PATTERN * 8)

    def params_after(self, arch, sequences, steps, lr=1e6):
        name = f"{arch}-{sequences}-{lr}"
        path = self.tmp / f"{name}.json"
        path.write_text(json.dumps(config(arch, sequences, lr, steps)))
        r = run_speedrun("train", path, "--run-name", name, "--save-params", "--no-progress", cwd=self.tmp)
        self.assertSucceeds(r)
        run = self.tmp / "runs" / name
        return {p.stem: np.load(p).astype(np.float64) for p in sorted((run / "params").glob("*.npy"))}

    def changes(self, arch, steps):
        init = self.params_after(arch, 2, steps, lr=1e-30)  # lr must be > 0: changes below 1e-36
        two, four = self.params_after(arch, 2, steps), self.params_after(arch, 4, steps)
        d2 = {n: two[n] - init[n] for n in init}
        d4 = {n: four[n] - init[n] for n in init}
        return d2, d4

    def test_record26_averages_over_sequences(self):
        # Two steps: the zero lm_head stops every other gradient at step 0. Equal mean gradients
        # give equal first steps, hence equal second steps.
        d2, d4 = self.changes("record26", 2)
        moved = [n for n in d2 if np.max(np.abs(d2[n])) > 1e-4]
        self.assertIn("lm_head.weight", moved)
        self.assertIn("embed.weight", moved)
        self.assertGreater(len(moved), 10)
        for n in moved:
            # The same mean gradient: equal to fp32 rounding of the parameters (|p| <~ 4: 5e-7)
            # and of the sums (relative 1e-5), far below a factor of 2.
            np.testing.assert_allclose(d4[n], d2[n], rtol=1e-4, atol=2e-6, err_msg=n)
        worst = max(float(np.max(np.abs(d4[n] - d2[n]))) for n in moved)
        print(f"\nrecord26: 4 vs 2 sequences, max |change difference| {worst:.3g}", file=sys.stderr)

    def test_track3_sums_over_the_batch(self):
        d2, d4 = self.changes("track3", 1)
        moved = [n for n in d2 if np.max(np.abs(d2[n])) > 1e-4]
        self.assertIn("proj.weight", moved)
        for n in moved:
            np.testing.assert_allclose(d4[n], 2 * d2[n], rtol=1e-4, atol=4e-6, err_msg=n)


if __name__ == "__main__":
    speedrun_testing.main()
