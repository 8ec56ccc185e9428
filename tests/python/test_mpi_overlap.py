"""The overlapped gradient reduction under mpirun (CPU backend, MPI communicator).

With train.grad_bucket_mb > 0 every optimizer's gradient collectives start during the
last micro-batch's backward (non-blocking MPI) as soon as their gradients are final;
with 0 they run after the backward, as before the overlap existed. For every optimizer
(AdamW in every config, with Muon, Newton-Muon or RMNP on the matrices) and bucket sizes
that split the parameters several ways (0.001 MiB: the 256-byte biases and gains share
buckets of about four, every matrix and the embedding is alone; 1e-6 MiB: one bucket per
parameter; 25 MiB, the default: one bucket per AdamW group), with the matrix optimizers'
rounds as their unit:

- 2 ranks: the parameters after 3 steps (Newton-Muon refreshing at steps 0 and 2) equal the no-overlap run's BITWISE. Each element
  is a sum of two partial sums, which every MPI algorithm adds the same way (a + b = b + a
  in fp32), so any difference is a wrong reduction, never rounding.
- 4 ranks: every bucket size gives the same parameters bitwise (Open MPI's non-blocking
  reduce-scatter adds the four partial sums of an element in one order whatever the
  message), but that order differs from the blocking reduce-scatter's, so against the
  no-overlap run the test allows the rounding test_mpi.py justifies for 1 vs R ranks
  (atol 2e-5 + rtol 1e-4; measured differences are printed).
- Every collective started inside the backward, and some finished inside it
  (metrics.jsonl's grad_overlap: the polls at each gradient report saw them complete).

Negative controls (SPEEDRUN_TEST_BUCKET_FAULT): a collective started before its last
gradient was final ("early") and a skipped collective ("skip") make the same comparison
fail, by far more than the 4-rank tolerance.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import run_speedrun  # noqa: E402
import test_mpi  # noqa: E402  (skips, exit 77, without mpirun or numpy)
from test_mpi import VOCAB, load_params, mpi_config, mpirun  # noqa: E402

import numpy as np  # noqa: E402


def max_diff(got, want):
    return max(float(np.max(np.abs(got[k] - want[k]))) for k in want)


def bitwise_equal(got, want):
    return sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)


class TestOverlappedReduction(test_mpi.MpiTestCase):
    def train(self, ranks, cfg, name, bucket_mb, env=None):
        r = mpirun(ranks, "train", cfg, "--run-name", name, "--save-params", "--no-progress",
                   "--set", f"train.grad_bucket_mb={bucket_mb}", "--set", "train.steps=3", env=env)
        self.assertSucceeds(r)
        run = self.tmp / "runs" / name
        metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        return load_params(run), metrics, r

    def check_optimizer(self, matrix_optimizer):
        cfg = self.write_config(matrix_optimizer)
        completed_in_backward = 0
        for ranks, sizes in ((2, (0.001, 1e-6, 25)), (4, (0.001, 1e-6))):
            want, _, r = self.train(ranks, cfg, f"off{ranks}", 0)
            self.assertIn("gradient reduction: after the backward", r.stderr + r.stdout)
            first = None
            for mb in sizes:
                with self.subTest(ranks=ranks, bucket_mb=mb):
                    got, metrics, r = self.train(ranks, cfg, f"np{ranks}-{mb}", mb)
                    steps = [m["grad_overlap"] for m in metrics if "train_loss" in m]
                    self.assertEqual(len(steps), 3)
                    for s in steps:  # every collective started inside the backward
                        self.assertGreater(s["collectives"], 3)
                        self.assertEqual(s["started_in_backward"], s["collectives"])
                    completed_in_backward += sum(s["completed_in_backward"] for s in steps)
                    print(f"\n{matrix_optimizer}, {ranks} ranks, {mb} MiB: {steps[0]['collectives']} collectives, "
                          f"max |diff| vs no overlap {max_diff(got, want):.3g}", file=sys.stderr)
                    if ranks == 2:
                        self.assertTrue(bitwise_equal(got, want), f"max |diff| {max_diff(got, want):.3g}")
                    else:
                        for k, w in want.items():
                            np.testing.assert_allclose(got[k], w, rtol=1e-4, atol=2e-5, err_msg=k)
                        if first is None:
                            first = got
                        self.assertTrue(bitwise_equal(got, first), "bucket sizes disagree at 4 ranks")
        # Some collectives completed while the backward still computed (the polls at the
        # gradient reports saw them done): real overlap, not a deferred start. Summed over all
        # five runs (15 steps): a step whose peer rank was descheduled (2 cores, oversubscribed by
        # ctest -j2) sees none, and the three 2-rank runs of rmnp once saw none at all.
        print(f"\n{matrix_optimizer}: {completed_in_backward} collectives completed inside the backward",
              file=sys.stderr)
        self.assertGreater(completed_in_backward, 0)
        return cfg

    def test_adamw_muon(self):
        self.check_optimizer("muon")

    def test_adamw_newton_muon(self):
        self.check_optimizer("newton_muon")

    def test_adamw_rmnp(self):
        self.check_optimizer("rmnp")

    def test_record26_overlapped_equals_after_the_backward(self):
        # Record26's backward reports each gradient once it is final (model/record26.h: the
        # head, then per layer, value_embeds.j after layer j, scalars after layer 0, embed
        # last): every collective starts inside the backward, and the sums are the blocking
        # path's -- bitwise at 2 ranks (a + b = b + a), with Muon's rounds over qkv_w's parts.
        cfg = mpi_config("muon", "data/t_train_*.bin", "data/t_val_*.bin", str(self.tmp / "runs"))
        cfg["model"] = {"arch": "record26", "n_layer": 8, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": 32,
                        "vocab_size": VOCAB, "padded_vocab_size": VOCAB, "doc_separator": VOCAB - 1,
                        "attn_block_size": 8, "window_tokens": 24, "window_pattern": "LSSSSLSL",
                        "logit_softcap": "sigmoid", "logit_cap": 30}
        # 8 layers: layer 7 has no attention (and would be value_embeds.2's second user), so
        # the reports skip its attention parameters and table 2 is reported after layer 2.
        cfg["optimizers"] = [
            {"type": "adamw", "params": ["embed.weight", "value_embeds.*", "lm_head.weight", "scalars"], "lr": 0.01,
             "betas": [0.8, 0.95], "eps": 1e-10, "eps_placement": "v"},
            {"type": "muon", "params": ["blocks.*"], "lr": 0.02},
        ]
        path = self.tmp / "r26.json"
        path.write_text(json.dumps(cfg))
        want, _, _ = self.train(2, path, "off", 0)
        completed_in_backward = 0
        for mb in (0.001, 1e-6, 25):  # buckets of a few parameters, one per parameter, one per group
            with self.subTest(bucket_mb=mb):
                got, metrics, r = self.train(2, path, f"bucketed-{mb}", mb)
                # The memory plan's reduction buffers, qkv_w's three matrices included (issue 16).
                buffers = re.search(r"gradient reduction buffers: (\d+) bytes allocated, (\d+) bytes planned", r.stderr)
                self.assertIsNotNone(buffers, r.stderr)
                self.assertEqual(buffers.group(1), buffers.group(2))
                steps = [m["grad_overlap"] for m in metrics if "train_loss" in m]
                self.assertEqual(len(steps), 3)
                for s in steps:
                    self.assertGreaterEqual(s["collectives"], 3)
                    self.assertEqual(s["started_in_backward"], s["collectives"])  # every one reported
                completed_in_backward += sum(s["completed_in_backward"] for s in steps)
                self.assertIn("blocks.0.attn.qkv_w", want)
                self.assertNotIn("blocks.7.attn.qkv_w", want)
                print(f"\nrecord26, 2 ranks, {mb} MiB: {steps[0]['collectives']} collectives, max |diff| vs no "
                      f"overlap {max_diff(got, want):.3g}", file=sys.stderr)
                self.assertTrue(bitwise_equal(got, want), f"max |diff| {max_diff(got, want):.3g}")
        print(f"\nrecord26: {completed_in_backward} collectives completed inside the backward", file=sys.stderr)
        # Negative controls: a collective started at its first report, before its other
        # gradients were final ('early'), and one never run ('skip') are seen.
        for fault in ("early", "skip"):
            bad, _, _ = self.train(2, path, fault, 0.001, env={"SPEEDRUN_TEST_BUCKET_FAULT": fault})
            print(f"\nrecord26, fault {fault}: max |param diff| {max_diff(bad, want):.3g}", file=sys.stderr)
            self.assertGreater(max_diff(bad, want), 1e-3)
        got = load_params(self.tmp / "runs" / "bucketed-0.001")
        # And both are the one-process run (the same tokens through gradient accumulation) to
        # the fp32 reduction order: the gradients were summed over the ranks, not left local.
        # Muon's matrices only: Adam with eps 1e-10 turns a near-zero gradient entry's rounding
        # into a step of up to +-lr (measured: the scalars part by 5e-4). Muon's
        # orthogonalization amplifies the order's rounding over 3 steps (measured: 2.6e-5); a
        # gradient of half the batch would move each entry by a step's update, ~lr / sqrt(32)
        # = 3.5e-3, so atol 2e-4 tells the two apart.
        r = run_speedrun("train", path, "--run-name", "np1", "--save-params", "--no-progress", "--set",
                         "train.steps=3", env={"OMP_NUM_THREADS": "1"})
        self.assertSucceeds(r)
        single = load_params(self.tmp / "runs" / "np1")
        single = {k: v for k, v in single.items() if k.startswith("blocks.")}
        self.assertGreater(len(single), 10)
        print(f"\nrecord26, 2 ranks vs 1: max |diff| of Muon's matrices {max_diff(got, single):.3g}", file=sys.stderr)
        for k, w in single.items():
            np.testing.assert_allclose(got[k], w, rtol=0, atol=2e-4, err_msg=k)

    def test_reduction_buffers_are_what_the_plan_says(self):
        # Issue 16: the memory plan counts the collectives' buffers (train/communication_plan.h);
        # after the first step every rank's optimizers have allocated all of them, and rank 0
        # logs both figures. Every optimizer, 2 and 4 ranks (padded shards, a short last round), with the
        # overlap's per-bucket/per-round buffers and without (one reused set).
        planned_by = {}
        for matrix in ("muon", "newton_muon", "rmnp"):
            cfg = self.write_config(matrix, f"{matrix}.json")
            for ranks in (2, 4):
                for mb in (0, 0.001, 25):
                    with self.subTest(matrix=matrix, ranks=ranks, bucket_mb=mb):
                        r = mpirun(ranks, "train", cfg, "--run-name", f"{matrix}-{ranks}-{mb}", "--no-progress",
                                   "--set", f"train.grad_bucket_mb={mb}", "--set", "train.steps=1")
                        self.assertSucceeds(r)
                        m = re.search(r"gradient reduction buffers: (\d+) bytes allocated, (\d+) bytes planned",
                                      r.stderr)
                        self.assertIsNotNone(m, r.stderr)
                        allocated, planned = int(m.group(1)), int(m.group(2))
                        self.assertGreater(allocated, 0)
                        self.assertEqual(allocated, planned)
                        self.assertIn("gradient reduction buffers (", r.stderr)  # the plan's line
                        planned_by[(matrix, ranks, mb)] = planned
        print(f"\nplanned reduction buffers: {planned_by}", file=sys.stderr)
        # The figures depend on what they should: the overlap's own buffers per round and bucket.
        self.assertNotEqual(planned_by[("muon", 2, 0)], planned_by[("muon", 2, 0.001)])
        self.assertNotEqual(planned_by[("muon", 2, 0)], planned_by[("muon", 4, 0)])

    def test_wrong_reductions_are_noticed(self):
        cfg = self.write_config("muon")
        want, _, _ = self.train(2, cfg, "off", 0)
        for fault in ("early", "skip"):
            with self.subTest(fault=fault):
                got, _, _ = self.train(2, cfg, fault, 0.001, env={"SPEEDRUN_TEST_BUCKET_FAULT": fault})
                diff = max_diff(got, want)
                print(f"\nfault {fault}: max |param diff| vs the correct run {diff:.3g}", file=sys.stderr)
                self.assertFalse(bitwise_equal(got, want))
                self.assertGreater(diff, 1e-3)  # 50x the 4-rank tolerance's atol

    def test_bad_fault_name_is_refused(self):
        cfg = self.write_config("muon")
        r = mpirun(2, "train", cfg, "--no-progress", env={"SPEEDRUN_TEST_BUCKET_FAULT": "late"}, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("SPEEDRUN_TEST_BUCKET_FAULT='late'", r.stderr)


if __name__ == "__main__":
    speedrun_testing.main()
