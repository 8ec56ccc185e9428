// The optimizer interface. An Optimizer owns one parameter group: the parameters one
// config entry's patterns selected, with that entry's lr, weight decay and settings.
// The trainer calls step() once per training step with each rank's gradients summed
// over its own micro-batches only: step() reduces them over ranks (SUM, the loss being
// a sum over the global batch's tokens) in whatever form its sharding needs
// (reduce-scatter for AdamW's ZeRO-1 shards and the matrix optimizers' round-robin),
// so no gradient is reduced twice. Afterwards every rank holds the same parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/run_config.h"
#include "core/tensor.h"
#include "dist/communicator.h"
#include "model/model.h"

namespace speedrun::optim {

// One parameter of a group: its name and its parameter and gradient views.
struct ParamRef {
  std::string name;
  Tensor param;
  Tensor grad;
};

// What an optimizer may use besides its parameters.
struct OptimizerContext {
  dist::Communicator* comm = nullptr;  // never null; the local communicator in one process
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // The config type name ("adamw", "muon", ...).
  virtual const char* type() const = 0;
  // Updates every parameter of the group. `step` is the 0-based training step;
  // `lr_factor` the schedule's multiplier for this step (applied to the group's lr).
  virtual void step(int64_t step, double lr_factor) = 0;
  // Bytes of optimizer state.
  virtual size_t state_bytes() const = 0;
  // The sink for layer inputs this optimizer needs during the forward passes of
  // `step` (Newton-Muon on its refresh steps), or nullptr (no capture, no cost).
  virtual model::LayerInputSink* capture_sink(int64_t step) { return nullptr; }
  // Counters for the step's metrics record (e.g. Newton-Muon's Cholesky fallbacks);
  // null when there are none.
  virtual nlohmann::json metrics() const { return nullptr; }
};

// Creates the optimizer of config entry `entry` over `params` (the registry: one line
// per optimizer type in optim/registry.cpp).
std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                          const OptimizerContext& context);

}  // namespace speedrun::optim

namespace speedrun::optim {

// One optimizer per config entry, over the model's parameters that the entry's
// patterns select (see param_groups.h; throws UserError on a bad assignment).
std::vector<std::unique_ptr<Optimizer>> build_optimizers(const std::vector<config::OptimizerConfig>& entries,
                                                         model::Model& model, const OptimizerContext& context);

}  // namespace speedrun::optim
