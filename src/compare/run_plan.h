// Which runs a comparison consists of: every config for every seed, each in a run
// directory named after the config's label, the seed and a hash of the resolved
// config, so that changing anything that changes a run gives a new directory and a
// rerun of the same command finds its finished runs again.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/run_config.h"

namespace speedrun::compare {

struct ComparedConfig {
  std::string file;   // as given on the command line
  std::string label;  // unique within the comparison: the config's name, else file stem
  config::RunConfig cfg;  // --set and --target applied; train.seed is the base seed
};

struct PlannedRun {
  size_t config_index = 0;
  int seed_index = 0;  // k: seed = base seed + k
  int64_t seed = 0;
  config::RunConfig cfg;  // seed and out_dir set for this run
  std::string hash;       // config_hash(cfg)
  std::string run_name;   // <label>-seed<seed>-<hash>
  std::filesystem::path run_dir;
};

// A stable 64-bit FNV-1a hash (16 hex digits) of the resolved config as JSON, keys
// sorted. Leaves out what cannot change the run's result: train.out_dir (where it is
// written), and train.target_val_loss unless train.stop_at_target is set (otherwise
// the target only labels the curve; the comparison recomputes the first step at or
// below its own target from the curve). Not a cryptographic hash: it tells runs
// apart, it does not guard against tampering.
std::string config_hash(const nlohmann::json& resolved_config);
std::string config_hash(const config::RunConfig& cfg);

// Makes labels unique and file-name safe: the config's name, else its file stem;
// repeated labels get "-2", "-3", ...
void assign_labels(std::vector<ComparedConfig>& configs);

// The runs in order: all configs for seed 0, then all for seed 1, ..., so that an
// interrupted comparison already has every config at its first seeds.
// Throws UserError when two configs are the same run (same hash).
std::vector<PlannedRun> plan_runs(const std::vector<ComparedConfig>& configs, int seeds,
                                  const std::filesystem::path& runs_dir);

}  // namespace speedrun::compare
