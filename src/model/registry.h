// The architecture registry: model.arch -> the Model class that implements it, its
// parameter layout and its memory plan. Adding an architecture is a Model implementation
// (its own files), its name in ModelConfig::arch's one_of, and one line in each function of
// model/registry.cpp -- the way optimizers are added (optim/registry.cpp).
#pragma once

#include <cstdint>
#include <memory>

#include "config/run_config.h"
#include "core/tensor.h"
#include "model/model.h"
#include "model/param_layout.h"

namespace speedrun::model {

// Throws UserError naming model.arch when the architecture has no implementation on
// `device` (today every architecture runs on both: the hook stays for the next one), and
// std::invalid_argument for an arch without a model class. Everything below calls it first.
void check_arch_supported(const config::ModelConfig& cfg, Device device);

// The model of cfg.arch, allocated for micro-batches of up to max_batch_seqs sequences
// (see model::Gpt for `activations`).
std::unique_ptr<Model> make_model(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs,
                                  DType activations = DType::f32);

// cfg.arch's parameters (ParamLayout(cfg) is this).
ParamLayout layout_for(const config::ModelConfig& cfg);

// What the model's constructor allocates, without allocating (the memory plan): its
// activation arena and its bf16 weight copies.
size_t plan_activation_bytes(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs,
                             DType activations);
size_t plan_weight_copy_bytes(const config::ModelConfig& cfg, Device device, DType activations);

}  // namespace speedrun::model
