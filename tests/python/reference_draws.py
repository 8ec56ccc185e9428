"""Runs the AdamW + Muon multi-step parameter comparison of test_reference_torch.py on many
draws: the part of TestTrack3AgainstTorch that fresh draws once made fail for the wrong
reason (noise-led AdamW elements), at the test's real shapes (reference-small.json, 5 steps,
perturbed initialization; with --sigmoid also the sigmoid-cap variant). Not a test itself
(ctest runs test_*.py only): the record of docs/correctness.md was made with it.

  /usr/bin/python3 tests/python/reference_draws.py [--draws N] [--until HH:MM (UTC)] [--sigmoid] [SEED[:VARIANT]...]

Prints one line per draw (seed, variant, pass/FAIL with the failed assertion) and a total."""
import argparse
import datetime
import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import test_reference_torch as ref_test  # noqa: E402

VARIANTS = {
    "perturbed": ("--init-noise", "0.02"),
    "sigmoid": ("--init-noise", "0.02", "--set", "model.logit_softcap=sigmoid", "--set", "model.logit_cap=30",
                "--set", "optimizers[3].nesterov=false", "--set", "optimizers[3].ns_preset=quintic"),
}


class Draws(ref_test.ReferenceChecks):
    def runTest(self):  # noqa: N802 (unittest's name)
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("seeds", nargs="*", help="SEED or SEED:VARIANT (perturbed, sigmoid)")
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--until", help="stop starting draws after this UTC time (HH:MM)")
    ap.add_argument("--sigmoid", action="store_true", help="alternate the perturbed and sigmoid-cap variants")
    args = ap.parse_args()
    os.environ.pop("SPEEDRUN_REFERENCE_SEED", None)
    deadline = None
    if args.until:
        h, m = map(int, args.until.split(":"))
        now = datetime.datetime.now(datetime.timezone.utc)
        deadline = now.replace(hour=h, minute=m, second=0, microsecond=0)
    seeds = list(args.seeds) or [str(int.from_bytes(os.urandom(4), "little")) for _ in range(args.draws)]
    passed = failed = 0
    for i, seed in enumerate(seeds):
        if deadline and datetime.datetime.now(datetime.timezone.utc) >= deadline:
            print(f"stopped at the deadline after {i} draws")
            break
        seed, _, variant = seed.partition(":")
        variant = variant or ("sigmoid" if args.sigmoid and i % 2 else "perturbed")
        case = Draws()
        start = time.time()
        with tempfile.TemporaryDirectory(prefix="speedrun-draws-") as tmp:
            case.tmp = tmp
            try:
                ref = ref_test.ReferenceRun(tmp, *VARIANTS[variant], seed=seed, fixed=True)
                case.check_optimizer_steps(ref)
                passed += 1
                print(f"draw {i + 1}: seed {seed} {variant}: pass ({time.time() - start:.0f} s)", flush=True)
            except AssertionError as e:
                failed += 1
                print(f"draw {i + 1}: seed {seed} {variant}: FAIL: {e}", flush=True)
    print(f"total: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    unittest.TestCase.maxDiff = None
    sys.exit(main())
