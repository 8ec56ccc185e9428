// Whether a model config can run on a device, beyond its precisions (model/precision.h):
// the CUDA attention kernels are compiled for a few head widths only
// (cuda::kAttentionHeadDims in kernels/ops/ops_cuda.h, the one list); the CPU backend takes
// any head_dim that is a multiple of 4 (checked with the config).
#pragma once

#include <string>

#include "config/run_config.h"
#include "core/tensor.h"

namespace speedrun::model {

// Throws UserError naming model.head_dim and the supported list when `device` is CUDA and
// the attention kernels have no instance for m.head_dim. Called wherever a CUDA run is
// planned (train, bench, compare; validate-config reports it as a warning), before
// anything is read or allocated. With model.fp8_head, also model.d_model,
// model.padded_vocab_size and model.seq_len must be multiples of 16 on CUDA (the FP8
// products' rule), else UserError naming the key.
void check_model_runs_on(const config::ModelConfig& m, Device device);

}  // namespace speedrun::model
