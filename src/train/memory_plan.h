// The device memory a run needs, computed before anything is allocated, so that a run
// that cannot fit says so up front (with the numbers) instead of failing at some
// cudaMalloc midway. Pure arithmetic: the model's buffers are counted by the same carve
// code that allocates them (Gpt::plan_*), so those lines are exact; workspaces and the
// optimizer state are estimates, and say so.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/tensor.h"

namespace speedrun::train {

struct MemoryItem {
  std::string what;
  size_t bytes = 0;
  bool estimate = false;  // not an exact count of what will be allocated
};

struct MemoryPlan {
  std::vector<MemoryItem> items;
  size_t total() const;
  // One line per item and a total, e.g. "  activations (bf16, 64 x 1024 tokens)  21.34 GiB".
  std::string to_string() const;
};

// What training (or the bench) of `cfg` on `device` with `activations` allocates:
// parameters and gradients (f32), bf16 weight copies, the activation arena for one
// micro-batch of train.micro_batch_seqs, on CUDA the cuBLASLt and kernel scratch
// workspaces, and (with_optimizer_state) an estimate of the optimizers' state.
MemoryPlan plan_memory(const config::RunConfig& cfg, Device device, DType activations, bool with_optimizer_state);

// The optimizers' state as the config's entries describe it (AdamW: m and v; Muon and
// RMNP: one momentum buffer; Newton-Muon: the momentum plus, per preconditioned input,
// its statistic, EMA and inverse, 3 n^2 floats per block). An estimate: buffers an
// optimizer keeps for its own work (Newton-Schulz iterates) are not counted.
size_t estimate_optimizer_state_bytes(const config::RunConfig& cfg);

// Throws UserError when plan.total() > free_bytes: how much was asked, how much is free
// (of total), the plan itself, and what to change.
void check_plan_fits(const MemoryPlan& plan, size_t free_bytes, size_t total_bytes);

}  // namespace speedrun::train
