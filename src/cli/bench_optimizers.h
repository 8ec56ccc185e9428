// speedrun bench --optimizers-only: the optimizer cost table (docs/optimizer-cost.md).
#pragma once

#include <string>

#include "config/run_config.h"
#include "core/tensor.h"

namespace speedrun::cli {

// Times each optimizer entry of `cfg` on random gradients (no forward/backward):
// ordinary steps, and for optimizers that capture layer inputs (Newton-Muon) the
// capture of one micro-batch's inputs and a refresh step. Prints a table; writes JSON
// to json_out when it is not empty. On Device::cuda the parameters, gradients, captured
// inputs (bf16) and optimizer state live on the device, times come from CUDA events, and
// the table adds the Newton-Schulz FLOP rate against a measured bf16 GEMM ceiling and
// Newton-Muon's refresh cost amortized over its refresh interval.
void bench_optimizers(const config::RunConfig& cfg, int steps, int warmup, const std::string& json_out,
                      Device device);

}  // namespace speedrun::cli
