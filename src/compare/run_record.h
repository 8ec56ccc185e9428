// What a comparison keeps of each run, and how it is kept in the run's own directory
// so that a rerun of the comparison can pick it up: summary.json (written by the
// trainer when the run finished) and config.json (the resolved config, whose hash must
// match the planned one), or failed.json (written here when the run failed).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace speedrun::compare {

struct RunResult {
  size_t config_index = 0;
  int seed_index = 0;
  int64_t seed = 0;
  std::string hash;
  std::filesystem::path run_dir;
  std::string outcome;       // "ran", "reused" (finished earlier) or "failed"
  std::string error;         // why it failed
  std::string train_status;  // the trainer's: "completed" or "stopped_at_target"
  int64_t steps = 0;
  double train_time_s = 0.0;
  double step_avg_ms = 0.0;
  double tokens_per_s = 0.0;
  std::vector<train::ValPoint> val;  // a failed run: the points it logged before failing
  std::optional<train::ValPoint> first_at_target;  // against the comparison's target

  bool ok() const { return outcome != "failed"; }
  double final_val_loss() const { return val.empty() ? 0.0 : val.back().val_loss; }
};

// The Track 3 rule: the first validation point whose loss is at or below the target
// (no interpolation between points). None without a target or when never reached.
std::optional<train::ValPoint> first_at_or_below(const std::vector<train::ValPoint>& val,
                                                 std::optional<double> target);

// Fills the measured fields of `r` from a finished run.
void take_summary(RunResult& r, const train::TrainSummary& s);

// Reads back a run that finished: its summary.json, after checking that its
// config.json hashes to `hash`. Returns false, with the reason in `why_not`, when the
// directory holds no finished run of that config.
bool read_finished_run(RunResult& r, std::string& why_not);

// The validation points in a run's metrics.jsonl (empty when it has none).
std::vector<train::ValPoint> read_logged_val_points(const std::filesystem::path& run_dir);

// Makes room for (re)running into `dir`. Returns true when the trainer must replace the
// directory (it holds an earlier, unfinished run of ours). Removes a directory that
// holds only our failed.json and/or AtomicFile temporaries (a killed writer's). Throws
// UserError for a directory that is not a speedrun run directory: it is never replaced.
bool prepare_run_dir(const std::filesystem::path& dir);

// Records a failed run in its directory (created when needed) as failed.json.
void write_failure(const RunResult& r);

}  // namespace speedrun::compare
