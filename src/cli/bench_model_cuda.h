// speedrun bench's CUDA model path: forward + backward of one micro-batch of the config's
// model on the device, timed with CUDA events, against a bf16 GEMM ceiling measured in the
// same run (MFU); then whole training steps (the micro-batches of train.batch_tokens and the
// optimizers' step) and the device memory in use.
#pragma once

#include <string>

#include "config/run_config.h"

namespace speedrun::cli {

// `timed` micro-batches after `warmup` untimed ones; the median is reported. Prints the
// device memory plan first and refuses (UserError) when it does not fit in free memory.
void bench_model_cuda(const config::RunConfig& cfg, int timed, int warmup, const std::string& json_out);

}  // namespace speedrun::cli
