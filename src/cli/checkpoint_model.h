// The model of a checkpoint, ready to run: what `speedrun sample` and `speedrun eval`
// share (model/model_file.h reads the file).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "config/run_config.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "model/model.h"

namespace speedrun::cli {

struct CheckpointModel {
  std::filesystem::path path;           // the checkpoint file (the newest one when a directory was named)
  std::optional<SafetensorsFile> file;  // open (mapped) until the model is built
  config::RunConfig config;             // as it was resolved for the run
  int64_t step = 0;
  std::unique_ptr<model::Model> model;  // after build_model: the model of config.model.arch
};

// Opens the checkpoint `file_or_dir` names (model::find_checkpoint) and reads its run
// config and step. Throws UserError naming the file.
CheckpointModel open_checkpoint(const std::string& file_or_dir);

// Builds the model for micro-batches of up to `max_batch_seqs` sequences on `device`, with
// `activations` (f32, or bf16 on CUDA), loads the parameters and closes the file. On the
// CPU a model.embedding_dtype of bf16 (the rounding a CUDA run reads its table with) is
// read as f32: the checkpoint holds the f32 master table. Throws UserError (an
// architecture `device` cannot run included: model::check_arch_supported).
void build_model(CheckpointModel& cm, Device device, int64_t max_batch_seqs, DType activations = DType::f32);

// Sets the OpenMP threads: `threads` when > 0, else `config_threads` (train.threads) when
// > 0, else all cores (the trainer's rule for a single process).
void set_cpu_threads(int64_t threads, int64_t config_threads);

}  // namespace speedrun::cli
