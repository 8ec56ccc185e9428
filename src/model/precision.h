// The model's storage precisions on a device, from the config's two settings
// (train.activation_dtype, model.embedding_dtype). Master parameters, their gradients and
// the optimizer state are f32 whatever these say.
#pragma once

#include <string>

#include "config/run_config.h"
#include "core/tensor.h"

namespace speedrun::model {

// "auto" -> bf16 on CUDA, f32 on the CPU; "f32"/"bf16" as named. Throws UserError naming
// train.activation_dtype when bf16 is asked for on the CPU (the CPU computes in f32 only).
DType resolve_activation_dtype(const std::string& setting, Device device);

// model.embedding_dtype as a DType; UserError naming the key for bf16 on the CPU.
DType resolve_embedding_dtype(const config::ModelConfig& m, Device device);

}  // namespace speedrun::model
