// The results of a comparison: per-config statistics over seeds, and the files written
// into the output directory (Markdown table, CSV and JSON of every validation point).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compare/comparability.h"
#include "compare/run_plan.h"
#include "compare/run_record.h"
#include "compare/statistics.h"

namespace speedrun::compare {

struct ConfigStats {
  std::string label;
  std::string file;
  ModelFacts model;  // architecture, parameters, FLOPs per token: what differs across models
  int runs = 0;    // planned
  int failed = 0;  // of those
  std::optional<double> target;
  Moments final_loss;  // over the runs that finished
  int reached = 0;     // finished runs with a validation point at or below the target
  Moments steps_to_target, time_to_target;  // over the runs that reached it
  Moments step_avg_ms, tokens_per_s;
  std::optional<double> track3;  // (target - mean final loss) * sqrt(n); none without target or runs
  std::optional<WelchResult> vs_first;  // final loss against the first config's
};

std::vector<ConfigStats> config_stats(const std::vector<ComparedConfig>& configs,
                                      const std::vector<RunResult>& runs);

// The Markdown report: the table, what its columns mean, and the failed runs.
std::string markdown_report(const std::vector<ConfigStats>& stats, const std::vector<ComparedConfig>& configs,
                            const std::vector<RunResult>& runs);

// One row per validation point of every run (failed runs: the points they logged).
std::string val_points_csv(const std::vector<ComparedConfig>& configs, const std::vector<RunResult>& runs);

// Everything: the configs with their statistics, every run with its outcome and curve.
nlohmann::json results_json(const std::vector<ConfigStats>& stats, const std::vector<ComparedConfig>& configs,
                            const std::vector<RunResult>& runs);

}  // namespace speedrun::compare
