#include "cli/checkpoint_model.h"

#include <omp.h>

#include <spdlog/spdlog.h>

#include "model/model_file.h"
#include "model/registry.h"

namespace speedrun::cli {

CheckpointModel open_checkpoint(const std::string& file_or_dir) {
  CheckpointModel out;
  out.path = model::find_checkpoint(file_or_dir);
  out.file.emplace(SafetensorsFile::open(out.path));
  out.config = model::config_of(*out.file);
  out.step = model::step_of(*out.file);
  return out;
}

void build_model(CheckpointModel& cm, Device device, int64_t max_batch_seqs, DType activations) {
  config::ModelConfig m = cm.config.model;
  if (device == Device::cpu && m.embedding_dtype != "f32") {
    spdlog::info("model.embedding_dtype = \"{}\" is CUDA only: the CPU reads the checkpoint's f32 table",
                 m.embedding_dtype);
    m.embedding_dtype = "f32";
  }
  model::check_arch_supported(m, device);
  cm.model = model::make_model(m, device, max_batch_seqs, activations);
  model::load_parameters(*cm.file, *cm.model);
  cm.file.reset();
}

void set_cpu_threads(int64_t threads, int64_t config_threads) {
  if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
  else if (config_threads > 0) omp_set_num_threads(static_cast<int>(config_threads));
}

}  // namespace speedrun::cli
