// The optimizer interface. An Optimizer owns one parameter group: the parameters one
// config entry's patterns selected, with that entry's lr, weight decay and settings.
// The trainer calls step() once per training step with each rank's gradients summed
// over its own micro-batches only: step() reduces them over ranks (SUM, the loss being
// a sum over the global batch's tokens) in whatever form its sharding needs
// (reduce-scatter for AdamW's ZeRO-1 shards and the matrix optimizers' round-robin),
// so no gradient is reduced twice. Afterwards every rank holds the same parameters.
//
// Overlap (dist/grad_buckets.h, docs/distributed.md): when train.grad_bucket_mb > 0 and
// several ranks run, the trainer hands each optimizer a GradBucketer through
// overlap_reduction() before the first step; the optimizer registers there the same
// collectives step() would issue (split into buckets), which then start during the
// backward of the step's last micro-batch, and step() waits on them instead.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/run_config.h"
#include "core/tensor.h"
#include "dist/communicator.h"
#include "dist/grad_buckets.h"
#include "model/model.h"

namespace speedrun::optim {

// One parameter of a group: its name and its parameter and gradient views.
struct ParamRef {
  std::string name;
  Tensor param;
  Tensor grad;
  size_t index = 0;  // in the model's ParamLayout: the index GradReadySink reports
  // The model's bf16 copy of this parameter (Model::weight_copy, same shape, bf16, on the
  // parameter's device) when the model lets the optimizer's update kernel write it; else
  // empty. Only the device optimizers write it (weight_copies_written says which).
  Tensor copy = {};
};

// What an optimizer may use besides its parameters.
// One piece of optimizer state on the host, as a checkpoint stores it (train/checkpoint.h,
// docs/checkpoints.md): f32 tensors (moments, momentum, statistics) or i64 scalars
// (counters). The state is always the whole, unsharded state, whatever the number of
// ranks: a sharded optimizer gathers it on export and takes its own shard on import.
struct StateTensor {
  std::string name;            // unique in its optimizer: "<param name>.<state>" or "<state>"
  std::vector<int64_t> shape;  // {} for a scalar
  std::vector<float> f32;      // numel(shape) values of an f32 tensor; empty for an i64 one
  std::vector<int64_t> i64;    // numel(shape) values of an i64 tensor; empty for an f32 one
  bool is_i64() const { return f32.empty() && !i64.empty(); }
};

// Where an optimizer's imported state comes from: a checkpoint file or (tests) memory.
// Both calls throw UserError naming the source and the tensor when it is absent or its
// shape differs.
class StateSource {
 public:
  virtual ~StateSource() = default;
  // Copies f32 tensor `name` of shape `shape` into `out` (numel(shape) floats).
  virtual void read_f32(const std::string& name, const std::vector<int64_t>& shape, float* out) const = 0;
  // The i64 scalar `name`.
  virtual int64_t read_i64(const std::string& name) const = 0;
};

// A StateSource over exported state held in memory.
class MemoryStateSource final : public StateSource {
 public:
  explicit MemoryStateSource(const std::vector<StateTensor>& state) : state_(state) {}
  void read_f32(const std::string& name, const std::vector<int64_t>& shape, float* out) const override;
  int64_t read_i64(const std::string& name) const override;

 private:
  const StateTensor& find(const std::string& name) const;
  const std::vector<StateTensor>& state_;
};

struct OptimizerContext {
  dist::Communicator* comm = nullptr;  // never null; the local communicator in one process
  // Target bytes of one gradient collective (train.grad_bucket_mb); 0: one collective per
  // group as without overlap. AdamW splits its ZeRO-1 shards by it; the matrix
  // optimizers' unit is one round of `world` matrices whatever its value.
  size_t grad_bucket_bytes = 0;
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
  // Bytes of the buffers it holds for its gradient collectives with several ranks (none with
  // one), as allocated so far: some are sized at the first step. train/communication_plan.h
  // plans the same bytes before anything is allocated.
  virtual size_t communication_bytes() const { return 0; }
  // The sink for layer inputs this optimizer needs during the forward passes of
  // `step` (Newton-Muon on its refresh steps), or nullptr (no capture, no cost).
  virtual model::LayerInputSink* capture_sink(int64_t step) { return nullptr; }
  // Counters for the step's metrics record (e.g. Newton-Muon's Cholesky fallbacks);
  // null when there are none.
  virtual nlohmann::json metrics() const { return nullptr; }
  // The layout indices of the parameters whose bf16 copies (ParamRef::copy) every step()
  // writes from the new masters in its own update kernels: the trainer tells the model
  // (Model::weights_updated) so that it does not convert them again. A parameter that
  // step() changes otherwise (an all-gather from other ranks, a host update) is never
  // listed. Fixed for the optimizer's lifetime. Default: none.
  virtual std::vector<size_t> weight_copies_written() const { return {}; }
  // Registers this group's gradient collectives with `bucketer` (see the top of this
  // file); afterwards step() waits on them there. Called at most once, before the first
  // step, with several ranks only. The default registers nothing: step() reduces itself.
  virtual void overlap_reduction(dist::GradBucketer& bucketer) {}
  // The whole state after the last step() (docs/checkpoints.md lists the names), on the
  // host. Collective: every rank calls it at the same step, and every rank gets the whole
  // state (a sharded optimizer gathers its shards; on CUDA it is copied from the device).
  virtual std::vector<StateTensor> export_state() = 0;
  // Replaces the state by `source`'s (each rank takes its own shard, so the state may
  // come from a run with another number of ranks). After it, step(s, f) continues exactly
  // as the exporting optimizer would have. Throws UserError for absent or misshapen state.
  virtual void import_state(const StateSource& source) = 0;
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

// The union of every optimizer's weight_copies_written(), for Model::weights_updated after
// their steps.
std::vector<size_t> weight_copies_written(const std::vector<std::unique_ptr<Optimizer>>& optimizers);

}  // namespace speedrun::optim
