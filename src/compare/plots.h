// Plots are drawn by Python scripts with matplotlib: the comparison's by
// scripts/plot_compare.py from results.json, `speedrun plot`'s by scripts/plot_runs.py
// (which shares plot_compare.py's y range and PNG writing). Plotting is optional: without
// Python or matplotlib the comparison still writes its table, CSV and JSON, and says why
// the plots were skipped.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace speedrun::compare {

struct PlotOutcome {
  bool drawn = false;
  bool failed = false;  // the script ran and failed (a PNG not written): an error, unlike "skipped"
  std::string message;  // what was written, or why nothing was
  std::vector<std::filesystem::path> files;
};

// Runs scripts/<script_name> with `args` under the plotting Python (SPEEDRUN_PYTHON, else
// /usr/bin/python3); `outputs` are the files it writes. The script exits 3 when matplotlib
// cannot be imported (skipped), non-zero on failure (failed: a PNG not written). Lines it
// prints starting "note: " (a clipped y range) are added to the message.
PlotOutcome run_plot_script(const std::string& script_name, const std::vector<std::string>& args,
                            const std::vector<std::filesystem::path>& outputs);

// The comparison's plots: plot_compare.py on `results_json`, writing PNGs into `out_dir`.
PlotOutcome draw_plots(const std::filesystem::path& results_json, const std::filesystem::path& out_dir);

// The PNG metadata (tEXt "Software") the scripts write into every plot, and whether the
// file at `path` carries it: a plot speedrun drew may be replaced by a new one, any other
// file only when asked (--force).
inline constexpr const char* kPlotSoftware = "speedrun plot";
bool is_speedrun_plot(const std::filesystem::path& path);

}  // namespace speedrun::compare
