// The comparison's plots are drawn by scripts/plot_compare.py (matplotlib) from
// results.json. Plotting is optional: without Python or matplotlib the comparison still
// writes its table, CSV and JSON, and says why the plots were skipped.
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

// Runs the plot script on `results_json`, writing PNGs into `out_dir`.
PlotOutcome draw_plots(const std::filesystem::path& results_json, const std::filesystem::path& out_dir);

}  // namespace speedrun::compare
