// A model in a checkpoint file: the parameters and the run config that a safetensors
// checkpoint holds (core/safetensors.h), read for `speedrun sample` and `speedrun eval`,
// written by whatever writes checkpoints.
//
// The checkpoint contract (issue 15; the trainer's checkpoints and tests/python/
// checkpoint_files.py write exactly this):
//   <run_dir>/checkpoints/step_<step, 6 digits zero-padded>.safetensors
//   every model parameter: an F32 tensor named as in model/param_layout.h
//     ("blocks.3.attn.q.weight"), shape ParamSpec::shape, C order
//   metadata "speedrun.format" = "speedrun-checkpoint/1"
//            "speedrun.config" = config::to_json(resolved RunConfig).dump()
//            "speedrun.step"   = the optimizer steps done, in decimal
// Other tensors (optimizer state, named "optimizers.*", and anything else) and other
// metadata keys may be present; readers of the model ignore them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/safetensors.h"
#include "model/model.h"

namespace speedrun::model {

inline constexpr const char* kCheckpointFormat = "speedrun-checkpoint/1";
inline constexpr const char* kFormatKey = "speedrun.format";
inline constexpr const char* kConfigKey = "speedrun.config";
inline constexpr const char* kStepKey = "speedrun.step";

// "step_000060.safetensors" (at least 6 digits; more for steps >= 10^6).
std::string checkpoint_file_name(int64_t step);

// The checkpoint a user named: a file is itself; a directory is a run directory (its
// checkpoints/ subdirectory) or a checkpoints directory, and gives its newest
// step_<N>.safetensors (the largest N; other names, temporaries included, are not
// checkpoints). Throws UserError naming the path when it does not exist or a directory
// holds no checkpoint.
std::filesystem::path find_checkpoint(const std::filesystem::path& file_or_dir);

// The resolved run config a checkpoint was written with (metadata speedrun.config),
// after checking speedrun.format. Throws UserError naming the file and the key: a missing
// or other format, a config that is not JSON or not a valid run config.
config::RunConfig config_of(const SafetensorsFile& file);

// The step recorded in metadata speedrun.step (a non-negative decimal integer); throws
// UserError naming the file otherwise.
int64_t step_of(const SafetensorsFile& file);

// Copies every parameter of model.layout() from `file` into the model (host or device),
// then model.weights_changed(). Each must be present as F32 with its layout shape; every
// problem is a UserError naming the file, the parameter, the expected and found dtype and
// shape (all missing parameters are listed together). Tensors the layout does not name
// are ignored (optimizer state and the like).
void load_parameters(const SafetensorsFile& file, Model& model);

// The tensors to write for a flat host f32 parameter buffer of `layout` (views into
// `params`, which must outlive the write): one F32 tensor per parameter, in layout order.
std::vector<SafetensorsTensor> parameter_tensors(const ParamLayout& layout, const float* params);

// The metadata of the contract above for `cfg` (resolved) at `step`.
std::map<std::string, std::string> checkpoint_metadata(const config::RunConfig& cfg, int64_t step);

// Writes a checkpoint holding the parameters alone (host f32 buffer of `layout`) and the
// contract's metadata, atomically (write_safetensors). A checkpoint with optimizer state
// adds its own tensors to parameter_tensors() and calls write_safetensors itself.
void write_model_checkpoint(const std::filesystem::path& path, const config::RunConfig& cfg, const ParamLayout& layout,
                            const float* params, int64_t step);

}  // namespace speedrun::model
