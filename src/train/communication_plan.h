// The memory of a run's communication, for the memory plan (train/memory_plan.h), computed
// before anything is allocated by the rules the optimizers allocate by:
//   - gradient reduction with several ranks (docs/distributed.md): AdamW's ZeRO-1 buckets
//     (optim/adamw.cpp: per bucket a flat world x shard buffer and a shard, shard =
//     ceil(bucket elements / world), the buckets split by train.grad_bucket_mb in backward
//     order, or one per group with 0); the matrix optimizers' rounds (optim/matrix_sharding.h,
//     device_matrix_sharding.h: R matrices per round in shape order, blocks padded to the
//     round's largest; with the overlap each round has its own send and receive buffers, without
//     it one set for the largest round, reused). Exact: the optimizers report what they
//     allocated (Optimizer::communication_bytes) and the trainer logs both after step 1.
//   - a checkpoint (train/checkpoint.h): every rank gathers every optimizer's whole,
//     unsharded state (optim::StateTensor) to write it (rank 0) or take part in the gather; a
//     device run also copies the parameters to the host. Host memory, during a checkpoint only.
#pragma once

#include <cstddef>

#include "config/run_config.h"
#include "core/tensor.h"
#include "train/memory_plan.h"

namespace speedrun::train {

// Bytes of the gradient-reduction buffers one of `world` ranks holds from the first step on,
// on `device` (where the optimizers' groups live); 0 for one rank.
size_t plan_reduction_buffer_bytes(const config::RunConfig& cfg, int world, Device device);

// Host bytes a checkpoint holds while it is written: every optimizer's exported state, whole,
// and for a device run the parameters' host copy.
size_t plan_checkpoint_gather_bytes(const config::RunConfig& cfg, Device device);

// Adds the lines above to a plan of `device`'s memory: the reduction buffers (exact) when
// world > 1; the checkpoint gather (host memory: only in a CPU run's plan, an estimate,
// transient).
void add_communication_items(MemoryPlan& plan, const config::RunConfig& cfg, int world, Device device);

}  // namespace speedrun::train
