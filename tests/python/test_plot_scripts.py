"""The y range the plot scripts share (scripts/plot_compare.py robust_ylim): a run that
starts far above the others must not squash them into a stub (issue 19), checked on the
numbers and on a drawn comparison plot, each with the naive range as a negative control."""
import importlib.util
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import CURVE_COLOURS, HAVE_MATPLOTLIB, curve_pixels, png_size  # noqa: E402

spec = importlib.util.spec_from_file_location("plot_compare", speedrun_testing.SOURCE_DIR / "scripts" / "plot_compare.py")
plot_compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot_compare)


def naive_ylim(curves, lows=()):
    """The range before issue 19: every point after step 0."""
    later = [y for c in curves for y in c[1:]]
    lo, hi = min(later + list(lows)), max(later)
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad, None


def fresh_curves(rng):
    """A run that starts far above (~30, down to ~5.5 within a tenth of the run) and two
    ordinary ones near 5, with noise: fresh on every run."""
    n = rng.randrange(40, 120)
    high = [10.8] + [30 - 24 * s / (n / 10) + rng.uniform(-0.1, 0.1) if s < n / 10 else 5.6 - 0.4 * s / n
                     for s in range(1, n)]
    lows = [[10.8] + [5.2 - 0.3 * s / n + rng.uniform(-0.05, 0.05) + 0.1 * k for s in range(1, n)] for k in range(2)]
    return high, lows


class TestRobustYlim(speedrun_testing.SpeedrunTestCase):
    def test_far_above_run_does_not_squash_the_others(self):
        rng = random.Random(int.from_bytes(os.urandom(4), "little"))
        for _ in range(20):
            high, lows = fresh_curves(rng)
            lo, hi, clipped = plot_compare.robust_ylim([high, *lows])
            # Every ordinary curve fills a real part of the range ...
            for c in lows:
                self.assertGreater((max(c[1:]) - min(c[1:])) / (hi - lo), 0.1)
                self.assertTrue(all(lo <= y <= hi for y in c[1:]))
            # ... the far-above run keeps most of its points in view, and the clipping is said.
            self.assertGreater(sum(lo <= y <= hi for y in high[1:]) / (len(high) - 1), 0.8)
            self.assertIsNotNone(clipped)
            self.assertEqual(clipped[0], sum(y > hi for c in (high, *lows) for y in c))
            self.assertAlmostEqual(clipped[1], max(high))
            # Negative control: the naive range squashes them.
            nlo, nhi, _ = naive_ylim([high, *lows])
            for c in lows:
                self.assertLess((max(c[1:]) - min(c[1:])) / (nhi - nlo), 0.05)

    def test_ordinary_curves_are_not_clipped(self):
        # The quickstart comparison's shape: four validations after step 0, all in view.
        curves = [[10.83, 6.4, 5.9, 5.7, 5.58], [10.83, 6.0, 5.3, 5.0, 4.93], [10.83, 5.9, 5.2, 4.95, 4.89]]
        lo, hi, clipped = plot_compare.robust_ylim(curves, lows=[6.0])
        self.assertTrue(all(lo <= y <= hi for c in curves for y in c[1:]))
        self.assertEqual(clipped, (3, 10.83))  # only the step-0 points leave the top

    def test_drawn_comparison_keeps_the_lower_curves_readable(self):
        if not HAVE_MATPLOTLIB:
            self.skipTest("skipped: /usr/bin/python3 has no matplotlib")
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        high, lows = fresh_curves(random.Random(int.from_bytes(os.urandom(4), "little")))
        # The lower run's own start: its line from a shared step-0 loss would cross the
        # plot whatever the range; the squash is what is measured.
        lows[0][0] = lows[0][1] + 0.05
        results = {"configs": [{"label": l, "target": None, "runs": 1, "failed": 0} for l in ("high", "low")],
                   "runs": [{"config": label, "outcome": "ran",
                             "val": [{"step": s, "val_loss": y, "train_time_s": 0.1 * s} for s, y in enumerate(c)]}
                            for label, c in (("high", high), ("low", lows[0]))]}
        rows = {}
        for name, ylim in (("robust", plot_compare.robust_ylim), ("naive", naive_ylim)):
            out = self.tmp / name
            out.mkdir()
            saved = plot_compare.robust_ylim
            plot_compare.robust_ylim = ylim
            try:
                written, notes = plot_compare.plot(results, out, plt)
            finally:
                plot_compare.robust_ylim = saved
            png = out / "val_loss_vs_step.png"
            self.assertEqual(png_size(png), (770, 495))
            self.assertGreater(curve_pixels(png, CURVE_COLOURS[0])[0], 500)
            rows[name] = curve_pixels(png, CURVE_COLOURS[1])[1]
            if name == "robust":
                self.assertTrue(notes and "clipped" in notes[0], notes)
        self.assertGreater(rows["robust"], 0.15)
        self.assertLess(rows["naive"], 0.1, "negative control: the naive range should squash the lower curve")


if __name__ == "__main__":
    speedrun_testing.main()
