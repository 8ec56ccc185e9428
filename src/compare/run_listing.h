// What `speedrun runs` shows of each run directory below a directory: read back from the
// files the trainer writes (config.json, metrics.jsonl, log.txt, summary.json) and the
// failed.json of `speedrun compare`, never from a process's memory.
//
// Status: the summary's ("completed", "stopped_at_target") when summary.json exists
// (written last: the run finished); else "running" while the trainer's process holds its
// lock on log.txt (core/file_lock.h); else "failed" when log.txt's last error line or a
// failed.json says why; else "killed": the process ended without a summary or an error
// (a signal, kill -9, a crash, the machine going down).
#pragma once

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace speedrun::compare {

struct RunInfo {
  std::filesystem::path dir;
  std::string name;    // the path below the listed directory ("r1", "compare-a-vs-b/runs/a-seed0-...")
  std::string status;  // completed, stopped_at_target, running, failed, killed, unreadable
  std::string detail;  // failed: the error; unreadable: what could not be read
  int64_t steps_done = 0;
  std::optional<int64_t> steps_total;        // train.steps
  std::optional<double> final_val_loss;      // the last validation point's
  std::optional<double> target;              // train.target_val_loss
  std::optional<int64_t> first_step_at_target;  // the first validated step at or below the target
  std::optional<double> tokens_per_s;        // the summary's, else the last step's
  std::string device;                        // from log.txt ("cpu", "cuda"); else train.device
  std::optional<std::time_t> started;        // config.json's time (written as the run starts)
};

// Every run directory at or below `dir` (a directory holding config.json and a
// metrics.jsonl, log.txt, summary.json or failed.json; hidden directories and a run's
// own subdirectories are not searched), newest first. Throws UserError when `dir` does
// not exist or is not a directory. A run whose files cannot be parsed is listed as
// "unreadable" with the reason, not dropped.
std::vector<RunInfo> list_runs(const std::filesystem::path& dir);

// One run as JSON (unknown values are null; `started` as ISO 8601 local time and as
// seconds since the epoch).
nlohmann::json run_info_json(const RunInfo& run);

// The table `speedrun runs` prints: a header, one line per run, then the reason of each
// failed or unreadable run.
std::string runs_table(const std::vector<RunInfo>& runs);

}  // namespace speedrun::compare
