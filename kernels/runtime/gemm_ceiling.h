// The device's practical bf16 matrix-multiply ceiling: one large bf16 x bf16 -> bf16
// product through the same cuBLASLt wrapper as the model (fp32 accumulation), timed with
// CUDA events. MFU figures divide by this measured rate rather than a datasheet peak
// (../shared/specs/performance.md). Plain C++ header; defined in kernels/runtime/gemm_ceiling.cu.
#pragma once

#include <cstdint>

namespace speedrun::cuda {

struct GemmCeiling {
  int64_t m = 0, n = 0, k = 0;
  int reps = 0;            // timed products
  double median_ms = 0.0;  // per product
  double tflops = 0.0;     // 2 m n k / median time
};

// Allocates A (m x k), B (k x n) and C (m x n) in bf16, fills A and B with small
// pseudo-random values (never zeros: data changes the power draw and so the clock), runs
// `warmup` products, then times `reps` one by one and returns the median. Frees everything.
GemmCeiling measure_bf16_gemm_ceiling(int64_t m, int64_t n, int64_t k, int warmup, int reps);

// The same for FP8 (record #26's head, kernels/ops/fp8_head.cu): A (m x k) and B (n x k) e4m3,
// both K-major as Hopper's FP8 products need, C (m x n) bf16, fp32 accumulation with fast
// accumulation (the head's forward setting), through cuda::fp8_gemm_tn. m, n, k multiples of
// 16. NEVER RUN ON A GPU YET.
GemmCeiling measure_fp8_gemm_ceiling(int64_t m, int64_t n, int64_t k, int warmup, int reps);

}  // namespace speedrun::cuda
