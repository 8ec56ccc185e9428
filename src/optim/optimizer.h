// The optimizer interface. An Optimizer owns one parameter group: the parameters one
// config entry's patterns selected, with that entry's lr, weight decay and settings.
// The trainer calls step() once per training step, after the gradients of the whole
// global batch are in place.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/tensor.h"

namespace speedrun::optim {

// One parameter of a group: its name and its parameter and gradient views.
struct ParamRef {
  std::string name;
  Tensor param;
  Tensor grad;
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
};

// Creates the optimizer of config entry `entry` over `params` (the registry: one line
// per optimizer type in optim/registry.cpp).
std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& entry, std::vector<ParamRef> params);

}  // namespace speedrun::optim
