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

Also the helpers that scripts/plot_runs.py (`speedrun plot`) shares: the y range
(robust_ylim) and the PNG writing (save_png).
"""
import io
import json
import pathlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run (runpy too)
from atomic_write import write_atomically  # noqa: E402

NO_MATPLOTLIB = 3
# The tEXt "Software" of every PNG we write: src/compare/plots.h kPlotSoftware. A file
# that carries it is a plot speedrun drew and may be replaced by a newer one.
SOFTWARE = "speedrun plot"
# The y range reaches HEADROOM times the height of the highest curve median above the
# lowest point: a curve's upper half stays in view unless it lies far above (a run that
# starts far above the others, the first steps' training loss), and no curve is squashed.
HEADROOM = 3.0


def quantile(values, q):
    """The q-quantile of values (linear interpolation between order statistics)."""
    v = sorted(values)
    if not v:
        raise ValueError("no values")
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def robust_ylim(curves, lows=()):
    """The y range that keeps every curve readable. Bottom: the lowest point (and the
    `lows`, e.g. targets). Top: the highest point after each curve's first (step 0,
    ~ln(vocab) = 10.8, is left out), but at most HEADROOM times the highest curve median
    (of its points after its first) above the bottom. A run that starts far above the
    others, or the first steps of a training loss, would otherwise squash every other
    curve into a stub at the bottom; instead those points leave the top of the plot, and
    `clipped` says how many and how high (note_clipped writes it into the plot).

    curves: lists of y values in x order. Returns (lo, hi, clipped), clipped is None or
    (points above hi, highest y); lo and hi are None when there is nothing to draw."""
    later = [c[1:] if len(c) > 1 else list(c) for c in curves if c]
    points = [y for c in later for y in c]
    if not points:
        return None, None, None
    bottom = min(points)
    median_top = max(quantile(c, 0.5) for c in later if c)
    top = min(max(points), bottom + HEADROOM * (median_top - bottom)) if median_top > bottom else max(points)
    bottom = min([bottom] + [t for t in lows if t is not None and t < top])
    pad = 0.05 * ((top - bottom) or 1.0)
    lo, hi = bottom - pad, top + pad
    above = [y for c in curves for y in c if y > hi]
    return lo, hi, ((len(above), max(above)) if above else None)


def note_clipped(ax, clipped):
    """Says in the plot that points are above its top (robust_ylim), and returns the note."""
    if not clipped:
        return None
    count, highest = clipped
    note = f"y range clipped: {count} point(s) above the top (highest {highest:.2f})"
    ax.annotate("↑ " + note, xy=(0.01, 0.99), xycoords="axes fraction", ha="left", va="top", fontsize=7,
                color="dimgrey")
    return note


def save_png(fig, path, plt):
    """Writes the figure as a PNG, complete or absent, tagged as ours (SOFTWARE)."""
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": SOFTWARE})
    plt.close(fig)
    write_atomically(path, png.getvalue())


def import_pyplot():
    """matplotlib.pyplot with the Agg backend, or None (and a message on stderr)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"matplotlib is not available to {sys.executable} ({e})", file=sys.stderr)
        return None
    return plt


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
    written, notes = [], []
    for x_kind, name, xlabel in (("step", "val_loss_vs_step.png", "step"),
                                 ("time", "val_loss_vs_time.png", "training time (s)")):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        drawn = []  # every seed's curve: the y range must keep each readable
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
            drawn += [lo, hi]
        shown = set()
        for i, label in enumerate(per_config):
            t = targets.get(label)
            if t is not None and t not in shown:
                shown.add(t)
                ax.axhline(t, color="grey", linestyle="--", linewidth=1)
                ax.annotate(f"target {t:g}", xy=(1, t), xycoords=("axes fraction", "data"), ha="right",
                            va="bottom", fontsize=8, color="grey")
        y_lo, y_hi, clipped = robust_ylim(drawn, lows=shown)
        if y_lo is not None:
            ax.set_ylim(y_lo, y_hi)
        note = note_clipped(ax, clipped)
        if note and x_kind == "step":
            notes.append(f"note: {name}: {note}")
        ax.set_xlabel(xlabel + ("" if x_kind == "step" else ", mean over seeds"))
        ax.set_ylabel("validation loss")
        ax.set_title("validation loss (line: mean over seeds, band: min..max)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = pathlib.Path(out_dir) / name
        save_png(fig, path, plt)
        written.append(path)
    return written, notes


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    plt = import_pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    results = json.loads(pathlib.Path(argv[1]).read_text())
    written, notes = plot(results, argv[2], plt)
    for path in written:
        print(path)
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
