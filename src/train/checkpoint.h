// Checkpoints: everything a resume needs in one safetensors file (core/safetensors.h),
// <run dir>/checkpoints/step_<step, 6 digits>.safetensors. docs/checkpoints.md lists
// every tensor name and metadata key; in short:
//   tensors   every parameter as F32 under its ParamLayout name ("blocks.3.attn.q.weight");
//             every optimizer's state as "optimizers.<entry index>.<state name>" (F32, or
//             I64 scalars for counters), whole (gathered over ranks: the file does not
//             depend on the number of ranks)
//   metadata  speedrun.format = "speedrun-checkpoint/1", speedrun.step, speedrun.config
//             (config::to_json of the resolved config), speedrun.config_hash,
//             speedrun.world_size, speedrun.version, speedrun.commit, speedrun.optimizers
//             (the entries' types), speedrun.train_state (TrainState::to_json), speedrun.rng
// Writes are atomic (AtomicFile): a file under its final name is complete; a kill leaves
// at most a hidden temporary. Every read error names the file (and the tensor or key).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "model/model.h"
#include "optim/optimizer.h"
#include "train/train_state.h"

namespace speedrun::train {

inline constexpr const char* kCheckpointFormat = "speedrun-checkpoint/1";

// <run_dir>/checkpoints
std::filesystem::path checkpoint_dir(const std::filesystem::path& run_dir);
// <run_dir>/checkpoints/step_<step, zero-padded to 6 digits>.safetensors
std::filesystem::path checkpoint_path(const std::filesystem::path& run_dir, int64_t step);
// The checkpoints in `dir` (names step_<digits>.safetensors, temporaries ignored), by
// step, oldest first; an absent directory has none.
std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(const std::filesystem::path& dir);
// Removes all but the newest `keep` checkpoints of `dir` (keep = 0: removes none).
void prune_checkpoints(const std::filesystem::path& dir, int64_t keep);
// "superseded-after-step_<step 6 digits>": where set_aside_later_checkpoints moves them.
std::string superseded_dir_name(int64_t step);
// Moves every checkpoint of `dir` whose step is after `step` into dir/superseded_dir_name(step)
// (a resume from `step` replaces them); returns how many. Throws UserError naming the file.
int set_aside_later_checkpoints(const std::filesystem::path& dir, int64_t step);

// Removes the hidden temporaries (core/files.h is_atomic_temporary) that writers killed
// mid-write left in `dir`; called when a run resumes (its earlier process is gone).
// Returns how many were removed.
int remove_checkpoint_temporaries(const std::filesystem::path& dir);

// Collective: every rank calls it at the same step (the optimizers gather their state).
// Rank `writer` alone writes `path`; the parameters are the same on every rank.
void save_checkpoint(const std::filesystem::path& path, bool writer, const nlohmann::json& resolved_config, int world,
                     model::Model& model, const std::vector<std::unique_ptr<optim::Optimizer>>& optimizers,
                     const TrainState& state);

// What `speedrun train --resume ARG` names: ARG itself when it is a file, else the newest
// checkpoint of the run directory ARG. Throws UserError when there is none.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& arg);

// A checkpoint opened for a resume (or for sample/eval): the file's checks done.
class Checkpoint {
 public:
  // Opens `path` and checks the format entry; throws UserError naming the file.
  static Checkpoint open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  const SafetensorsFile& file() const { return file_; }
  // The resolved config the run was started with (metadata speedrun.config).
  const nlohmann::json& config() const { return config_; }
  int64_t step() const { return step_; }
  int world_size() const { return world_; }
  TrainState state() const;
  // Copies every parameter into `model` (host or device); throws UserError naming the
  // file and the tensor when one is missing or has another shape.
  void load_parameters(model::Model& model) const;
  // Imports every optimizer's state (each rank takes its own shard).
  void load_optimizers(const std::vector<std::unique_ptr<optim::Optimizer>>& optimizers) const;

 private:
  explicit Checkpoint(SafetensorsFile file) : file_(std::move(file)) {}
  SafetensorsFile file_;
  nlohmann::json config_;
  int64_t step_ = 0;
  int world_ = 1;
};

// The flattened keys ("train.steps", "optimizers[1].lr") whose values differ between a
// checkpoint's resolved config and the resume's, leaving out the keys that are safe to
// change on a resume (resume_safe_keys()).
std::vector<std::string> config_differences(const nlohmann::json& checkpoint_config, const nlohmann::json& config);
// The keys a resume may change: validation cadence, checkpoint cadence and retention,
// the target, the CPU thread count, out_dir and the config's name.
const std::vector<std::string>& resume_safe_keys();

// Cuts metrics.jsonl at `path` after the record of training step `step` (the records a
// run wrote after the checkpoint it resumes from), atomically; with
// `keep_validation_at_step`, after the validation record of `step` that follows it (a
// run's final checkpoint is written after its final validation). Lines that are not JSON
// objects with a "step" stop the cut with a UserError naming the file and line.
void truncate_metrics(const std::filesystem::path& path, int64_t step, bool keep_validation_at_step = false);

}  // namespace speedrun::train
