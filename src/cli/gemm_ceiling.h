// The measured bf16 GEMM ceiling that the CUDA benches divide by for MFU
// (kernels/runtime/gemm_ceiling.h measures; this wraps it for the CLI: errors, text, JSON).
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "kernels/runtime/gemm_ceiling.h"

namespace speedrun::cli {

// A size x size x size bf16 product timed on the current CUDA device. UserError when
// this binary has no CUDA or no device is visible.
cuda::GemmCeiling measure_gemm_ceiling(int64_t size = 8192, int warmup = 5, int reps = 20);

// The FP8 (e4m3 x e4m3 -> bf16) ceiling at the same size: the rate FP8 rows are rated against.
cuda::GemmCeiling measure_fp8_gemm_ceiling(int64_t size = 8192, int warmup = 5, int reps = 20);

// "bf16 GEMM ceiling: 8192^3 in 1.39 ms (median of 20) = 791.0 TFLOP/s" (`what`: "bf16" or "FP8")
void print_gemm_ceiling(const cuda::GemmCeiling& c, const char* what = "bf16");
nlohmann::json gemm_ceiling_json(const cuda::GemmCeiling& c);

}  // namespace speedrun::cli
