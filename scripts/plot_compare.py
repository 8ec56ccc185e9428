#!/usr/bin/python3
"""Plots of a `speedrun compare` run: validation loss against step and against training
time, one colour per config, the mean over seeds as a line and the seeds' range
(min..max) as a band.

usage: plot_compare.py RESULTS_JSON OUT_DIR
Writes OUT_DIR/val_loss_vs_step.png and OUT_DIR/val_loss_vs_time.png. Exits with
status 3 (and says so) when matplotlib cannot be imported, so that the caller can
report the plots as skipped rather than failed. A PNG that cannot be written (a full
disk) ends the script with status 1 and "cannot write <file>: <reason>"; a PNG is
never left half-written under its name (write_atomically).
"""
import io
import json
import pathlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run (runpy too)
from atomic_write import write_atomically  # noqa: E402

NO_MATPLOTLIB = 3


def curves(results):
    """Per config label: sorted steps, and for each step the seeds' losses and times."""
    out = {}
    for run in results["runs"]:
        if run["outcome"] == "failed":
            continue
        per_step = out.setdefault(run["config"], {})
        for p in run["val"]:
            per_step.setdefault(p["step"], []).append((p["val_loss"], p["train_time_s"]))
    return out


def plot(results, out_dir, plt):
    per_config = curves(results)
    targets = {c["label"]: c["target"] for c in results["configs"]}
    seeds = {c["label"]: c["runs"] - c["failed"] for c in results["configs"]}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # The step-0 loss (about ln(vocab) = 10.8) would squash everything else: the y range
    # covers the points after the first validation.
    later = [l for pts in per_config.values() for s, v in pts.items() if s > 0 for l, _ in v]
    written = []
    for x_kind, name, xlabel in (("step", "val_loss_vs_step.png", "step"),
                                 ("time", "val_loss_vs_time.png", "training time (s)")):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        for i, (label, pts) in enumerate(per_config.items()):
            colour = colours[i % len(colours)]
            steps = sorted(pts)
            xs, mean, lo, hi = [], [], [], []
            for s in steps:
                losses = [l for l, _ in pts[s]]
                times = [t for _, t in pts[s]]
                xs.append(s if x_kind == "step" else sum(times) / len(times))
                mean.append(sum(losses) / len(losses))
                lo.append(min(losses))
                hi.append(max(losses))
            ax.plot(xs, mean, color=colour, marker="o", markersize=3,
                    label=f"{label} (n={seeds.get(label, 0)})")
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.25, linewidth=0)
        shown = set()
        for i, label in enumerate(per_config):
            t = targets.get(label)
            if t is not None and t not in shown:
                shown.add(t)
                ax.axhline(t, color="grey", linestyle="--", linewidth=1)
                ax.annotate(f"target {t:g}", xy=(1, t), xycoords=("axes fraction", "data"), ha="right",
                            va="bottom", fontsize=8, color="grey")
        ylabel = "validation loss"
        if later:
            lo_y, hi_y = min(later + list(shown)), max(later)
            pad = 0.05 * (hi_y - lo_y or 1.0)
            ax.set_ylim(lo_y - pad, hi_y + pad)
            first = max(l for pts in per_config.values() for v in pts.values() for l, _ in v)
            if first > hi_y + pad:
                ylabel += f" (step 0, {first:.2f}, is off the top)"
        ax.set_xlabel(xlabel + ("" if x_kind == "step" else ", mean over seeds"))
        ax.set_ylabel(ylabel)
        ax.set_title("validation loss (line: mean over seeds, band: min..max)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = pathlib.Path(out_dir) / name
        png = io.BytesIO()
        fig.savefig(png, format="png")
        plt.close(fig)
        write_atomically(path, png.getvalue())
        written.append(path)
    return written


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"matplotlib is not available to {sys.executable} ({e})", file=sys.stderr)
        return NO_MATPLOTLIB
    results = json.loads(pathlib.Path(argv[1]).read_text())
    for path in plot(results, argv[2], plt):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
