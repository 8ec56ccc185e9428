// Wires the optimizers' gradient collectives to a GradBucketer (dist/grad_buckets.h) so
// that they overlap the backward pass; see docs/distributed.md.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "dist/grad_buckets.h"
#include "optim/optimizer.h"

namespace speedrun::optim {

// train.grad_bucket_mb in bytes (MiB, as PyTorch DDP's bucket_cap_mb); 0 stays 0, any
// positive size is at least 1 byte.
size_t grad_bucket_bytes(double bucket_mb);

// The bucketer to pass to the model's backward on each step's last micro-batch, every
// optimizer's collectives registered; null when there is nothing to overlap (one
// process, or bucket_mb 0: each step() reduces after the backward). `n_params`: the
// model's parameter count. SPEEDRUN_TEST_BUCKET_FAULT injects a fault (tests only).
std::unique_ptr<dist::GradBucketer> overlap_gradient_reduction(std::vector<std::unique_ptr<Optimizer>>& optimizers,
                                                               size_t n_params, int world, double bucket_mb);

}  // namespace speedrun::optim
