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

// The factor the gradients of a step are multiplied by before the optimizers read them: the
// gradient of the step's loss as the architecture's spec defines it, given that each
// micro-batch's backward adds the gradient of its SUMMED cross-entropy.
//   track3: 1. ../shared/specs/model-track3.md, "Gradients": the loss is the SUM over the
//     global batch (micro-batches summed, then ranks summed).
//   record26: model.seq_len / batch_tokens, i.e. the MEAN over the batch's sequences of their
//     summed losses. Upstream (train_gpt.py at 345b2fb, record 071225_BosAlign) sums the
//     cross-entropy over each rank's one 49,152-token sequence (reduction="sum" in training)
//     and averages the ranks' gradients (reduce_scatter with ReduceOp.AVG in both DistAdam and
//     Muon): 1/8 of the global sum at 8 ranks. Sequences play the ranks' part, so one process
//     accumulating the same tokens gets the same gradient. (Muon is invariant to the factor up
//     to its normalisation's 1e-7; Adam's eps 1e-10 is not, nor is anything with weight decay
//     or gradient-scale-dependent state.)
double gradient_scale(const config::ModelConfig& cfg, int64_t batch_tokens);

// What the model's constructor allocates, without allocating (the memory plan): its
// activation arena and its bf16 weight copies.
size_t plan_activation_bytes(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs,
                             DType activations);
size_t plan_weight_copy_bytes(const config::ModelConfig& cfg, Device device, DType activations);

}  // namespace speedrun::model
