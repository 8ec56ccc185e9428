#!/usr/bin/python3
"""The plot of `speedrun plot`: training and validation loss of one or several runs,
against step (left) and against training time (right); for a single run, the lr factor of
the schedule on a second y axis. One colour per run: the training loss of every step as a
thin line, the validation points as a line with markers.

usage: plot_runs.py INPUT_JSON OUT_PNG
INPUT_JSON (written by `speedrun plot` from the runs' metrics.jsonl):
  {"runs": [{"name": ..., "target": loss or null,
             "train": [[step, loss, time_s], ...], "val": [[step, loss, time_s], ...],
             "lr": [[step, factor, time_s], ...]}, ...]}
Shares plot_compare.py's y range (robust_ylim: no curve squashed into a stub by one that
starts far above, the clipping said in the plot) and PNG writing (complete or absent,
tagged as ours). Exit status 3 when matplotlib cannot be imported.
"""
import json
import os
import pathlib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run (runpy too)
import plot_compare  # noqa: E402


def plot(data, out_png, plt):
    runs = data["runs"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    curves = [[p[1] for p in run[kind]] for run in runs for kind in ("train", "val") if run[kind]]
    targets = {run["target"] for run in runs if run.get("target") is not None}
    y_lo, y_hi, clipped = plot_compare.robust_ylim(curves, lows=targets)
    note = None
    for ax, x_index, xlabel in ((axes[0], 0, "step"), (axes[1], 2, "training time (s)")):
        for i, run in enumerate(runs):
            colour = colours[i % len(colours)]
            if run["train"]:
                ax.plot([p[x_index] for p in run["train"]], [p[1] for p in run["train"]], color=colour, alpha=0.45,
                        linewidth=1, label=f"{run['name']} train")
            if run["val"]:
                ax.plot([p[x_index] for p in run["val"]], [p[1] for p in run["val"]], color=colour, marker="o",
                        markersize=3, linewidth=1.8, label=f"{run['name']} val")
        for t in sorted(targets):
            ax.axhline(t, color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"target {t:g}", xy=(1, t), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                        fontsize=8, color="grey")
        if y_lo is not None:
            ax.set_ylim(y_lo, y_hi)
        note = plot_compare.note_clipped(ax, clipped) or note
        if len(runs) == 1 and runs[0]["lr"]:
            lr_ax = ax.twinx()
            lr_ax.plot([p[x_index] for p in runs[0]["lr"]], [p[1] for p in runs[0]["lr"]], color="dimgrey",
                       linestyle=":", linewidth=1.2, label="lr factor")
            lr_ax.set_ylim(0, 1.05 * max(1.0, max(p[1] for p in runs[0]["lr"])))
            lr_ax.set_ylabel("lr factor (schedule)", color="dimgrey")
            lines, labels = ax.get_legend_handles_labels()
            more, more_labels = lr_ax.get_legend_handles_labels()
            ax.legend(lines + more, labels + more_labels, fontsize=8)
        else:
            ax.legend(fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
    fig.suptitle("loss (thin: training, every step; markers: validation)")
    fig.tight_layout()
    if len(runs) == 1:
        fig.subplots_adjust(wspace=0.4)  # room for the left panel's lr axis label
    plot_compare.save_png(fig, out_png, plt)
    return note


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    plt = plot_compare.import_pyplot()
    if plt is None:
        return plot_compare.NO_MATPLOTLIB
    note = plot(json.loads(pathlib.Path(argv[1]).read_text()), argv[2], plt)
    print(argv[2])
    if note:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
