// The training loop, as Track 3's train_gpt_simple.py runs it: validate at step 0,
// every val_every steps (every val_every_final in the last val_final_frac), and at
// the end, with the clock stopped; otherwise one optimizer step per global batch,
// gradients summed over micro-batches (the loss is a SUM over tokens).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/run_config.h"

namespace speedrun::dist {
class Session;
}

namespace speedrun::train {

struct TrainOptions {
  std::string run_name;               // empty: <config name>-<timestamp>
  bool force = false;                 // replace an existing run directory of that name
  std::optional<std::string> device;  // overrides train.device
  std::string command_line;           // recorded in the run directory
  bool progress = true;               // live progress line
  std::string progress_label;         // prefix of the live line (which run of several)
  double eta_after_s = -1.0;          // time of the runs after this one, for an overall ETA (< 0: none)
  bool save_params = false;           // write the final parameters to <run dir>/params/<name>.npy
  // A checkpoint to continue (train/checkpoint.h), in its own run directory; the config
  // must match the checkpoint's but for the keys resume_safe_keys() names. Empty: a
  // fresh run.
  std::filesystem::path resume_from;
  // The process's place in a multi-process run; null: a single process.
  const dist::Session* session = nullptr;
};

struct ValPoint {
  int64_t step = 0;
  double val_loss = 0.0;
  double train_time_s = 0.0;
};

struct TrainSummary {
  std::filesystem::path run_dir;
  std::string status;  // "completed", "stopped_at_target", "interrupted" (SIGINT/SIGTERM)
  int signal = 0;      // the signal that interrupted the run, else 0
  int64_t steps_done = 0;
  double train_time_s = 0.0;
  double step_avg_ms = 0.0;
  double tokens_per_s = 0.0;
  std::vector<ValPoint> val;
  std::optional<ValPoint> first_at_target;
  nlohmann::json to_json() const;
  // The final status as the console shows it (and log.txt records it): the status with
  // the final loss and speed, whether the target was reached, the run directory.
  std::vector<std::string> status_lines(std::optional<double> target_val_loss) const;
};

// Runs a whole training run, or the rest of one from a checkpoint (opts.resume_from),
// and writes its run directory (rank 0 alone writes; the other ranks' summaries have an
// empty run_dir). Writes checkpoints every train.checkpoint_every steps, at the end, and
// when SIGINT or SIGTERM asks it to stop after the step in progress (then the status is
// "interrupted" and `signal` says which). Throws UserError for bad input, for a
// run that does not fit in memory (the plan's numbers) and for a non-finite loss
// (naming the step); log.txt records the error when the run directory exists by then.
TrainSummary run_training(const config::RunConfig& cfg, const TrainOptions& opts);

}  // namespace speedrun::train
