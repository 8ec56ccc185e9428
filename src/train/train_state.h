// The state of a run between two steps, beyond the parameters and the optimizers' state
// (which live in the model and the optimizers, and are exported from them when a
// checkpoint is written: holding host copies through the run would double the memory).
// A fresh run starts from TrainState{}; a resumed run from the checkpoint's
// (train/checkpoint.h); the loop (train/trainer.cpp) is the same code for both.
//
// Random numbers: none are drawn after initialization (the data order is fixed, there
// is no dropout), so there is no RNG state to carry; the seed is in the config.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/loader.h"
#include "train/trainer.h"

namespace speedrun::train {

struct TrainState {
  int64_t step = 0;                     // optimizer steps done
  data::TrainLoader::Position loader;   // where the next batch is read
  std::string loader_shard_file;        // the current shard's file name (checked on resume)
  double train_time_s = 0.0;            // training time so far: validation and checkpoints excluded
  int64_t last_val_step = 0;            // step of the last validation (its step_avg divides by this)
  std::vector<ValPoint> val;            // every validation so far (summary.json)
  std::optional<ValPoint> first_at_target;
  // The run has ended (its final validation is in `val`): "completed" or
  // "stopped_at_target"; empty while it runs. A finished run cannot be resumed.
  std::string finished_status;

  // As a checkpoint stores it (metadata "speedrun.train_state"; doubles are written with
  // enough digits to read back the same bits).
  nlohmann::json to_json() const;
  // Throws UserError naming `where` and the key that is missing or mistyped.
  static TrainState from_json(const nlohmann::json& j, const std::string& where);
};

}  // namespace speedrun::train
