// speedrun bench --kernels: a per-op table of one micro-batch's forward + backward on CUDA at
// the config's shapes (docs/cuda.md, "speedrun bench --kernels"). Each op of
// model::micro_batch_kernel_rows (src/model/kernel_table.h) is called on its own on device tensors
// of pseudo-random values, timed with CUDA events (`warmup` untimed calls, then the median of
// `timed`), and reported as ms per call, ms per micro-batch (x its count), TFLOP/s or GB/s and
// the percentage of a ceiling measured in the same run: the bf16 GEMM ceiling
// (kernels/runtime/gemm_ceiling.h) for products and attention, the device-to-device copy
// bandwidth (kernels/runtime/bench_support.h) for memory-bound ops. The selectable attention
// (tc, flash) and RMSNorm (legacy, fast) kernels are each timed too, the selected one counted.
// Then the sum of the table against the whole micro-batch (model::Gpt::forward_backward) timed
// in the same run: the difference is launch gaps, the host copies of ids and loss, and ops too
// small to list (sum_losses, the bias-gradient column sums are inside their linear rows).
#pragma once

#include <string>

#include "config/run_config.h"

namespace speedrun::cli {

// UserError (exit 1) in a binary built without CUDA or with no visible device, or when the
// model and the table's tensors do not fit in free device memory.
void bench_kernels(const config::RunConfig& cfg, int timed, int warmup, const std::string& json_out);

}  // namespace speedrun::cli
