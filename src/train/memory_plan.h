// The memory a run needs, computed before anything is allocated, so that a run that
// cannot fit says so up front (with the numbers) instead of failing at some cudaMalloc
// midway, or with a std::bad_alloc or the OOM killer on the CPU. Pure arithmetic: the
// model's buffers are counted by the same carve code that allocates them (Gpt::plan_*),
// so those lines are exact; workspaces, scratch and the optimizer state are estimates,
// and say so. On CUDA the plan is the device's; on the CPU it is the host's, data included.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/host_memory.h"
#include "core/tensor.h"

namespace speedrun::train {

struct MemoryItem {
  std::string what;
  size_t bytes = 0;
  bool estimate = false;   // not an exact count of what will be allocated
  bool transient = false;  // held only during a step (scratch), not for the whole run
};

struct MemoryPlan {
  std::vector<MemoryItem> items;
  size_t total() const;
  // One line per item and a total, e.g. "  activations (bf16, 64 x 1024 tokens)  21.34 GiB",
  // each ending with a newline (the last one too unless !final_newline).
  std::string to_string(bool final_newline = true) const;
};

// What training (or the bench) of `cfg` on `device` with `activations` allocates:
// parameters and gradients (f32), bf16 weight copies, the activation arena for one
// micro-batch of train.micro_batch_seqs (the head's logit chunk included; on CUDA the line
// names the storage choices of model::Gpt::Storage in force: SPEEDRUN_HEAD=fused saves
// chunk_rows x V x 4 bytes, SPEEDRUN_RELU2=recompute n_layer x tokens x 4d activations), on CUDA the
// cuBLASLt and kernel scratch workspaces, on the CPU the ops' scratch, and
// (with_optimizer_state) an estimate of the optimizers' state and, on the CPU, of their
// work buffers. For one process; the trainer adds the communication lines (reduction
// buffers with several ranks, the checkpoint's gather: train/communication_plan.h). With
// several ranks the state line is the whole state, which each rank holds a shard of.
MemoryPlan plan_memory(const config::RunConfig& cfg, Device device, DType activations, bool with_optimizer_state);

// The CPU optimizers' work buffers (for the largest matrix of each matrix-optimizer
// entry): Muon's and Newton-Muon's update and orthogonalized update, Newton-Muon's
// preconditioned gradient and each statistic's n x n work matrix (held between steps),
// and the Newton-Schulz iterates (X and
// the next X, of the matrix's size, and three r x r products, r its smaller side; held
// during a step only). AdamW and RMNP need none. In bytes: {held, during a step}.
struct WorkBytes {
  size_t held = 0, transient = 0;
};
WorkBytes estimate_cpu_optimizer_work_bytes(const config::RunConfig& cfg);

// The host memory of a rank's data: the training shard the loader holds (two while it
// moves to the next: uint16 tokens), one local batch of int32 inputs and targets, and
// its slice of the validation set (the same). Adds one line to `plan`.
void add_data_item(MemoryPlan& plan, int64_t largest_train_shard_tokens, int64_t local_batch_tokens,
                   int64_t local_val_tokens);

// The optimizers' state as the config's entries describe it (AdamW: m and v; Muon and
// RMNP: one momentum buffer; Newton-Muon: the momentum plus, per preconditioned input,
// its statistic, EMA and inverse, 3 n^2 floats per block). An estimate: buffers an
// optimizer keeps for its own work (Newton-Schulz iterates) are not counted.
size_t estimate_optimizer_state_bytes(const config::RunConfig& cfg);

// The CUDA kernels' scratch for a micro-batch of `micro_batch_seqs` sequences. It is one
// grow-only buffer (cuda::workspace(), kernels/runtime/context.cuh), so the largest single
// user counts: the embedding backward's sort (ids, indices, sorted copies, CUB's double
// buffers and histograms), or the attention backward's delta row (B H T floats), or, with
// `flash_attention` (the flash kernels, SPEEDRUN_ATTENTION=flash with bf16 activations), their
// delta plus the fp32 dQ accumulator (B T H D floats: 192 MiB at Track 3's 64 x 1024 tokens).
// Rounded up to a MiB. An estimate.
size_t estimate_kernel_scratch_bytes(const config::ModelConfig& m, int64_t micro_batch_seqs, bool flash_attention);

// Whether bf16 attention on CUDA runs the flash kernels in this process
// (cuda::attention_kernel(): SPEEDRUN_ATTENTION=flash or a test's override); always false
// in a build without CUDA. plan_memory counts their scratch when it is true.
bool flash_attention_selected();

// Throws UserError when plan.total() > free_bytes: how much was asked, how much is free
// (of total), the plan itself, and what to change.
void check_plan_fits(const MemoryPlan& plan, size_t free_bytes, size_t total_bytes);

// The same for a CPU run's host plan against query_host_memory(): the bytes needed
// (total and per line), the bytes available and which limits give them. The available
// memory is the node's, so the plan counts once for each of `processes_on_node` ranks
// (mpirun's local size) that hold it at the same time.
void check_host_plan_fits(const MemoryPlan& plan, const HostMemory& host, int processes_on_node = 1);

}  // namespace speedrun::train
