// The bf16 GEMM ceiling of the CUDA device: what the optimizer benchmark compares the
// Newton-Schulz products' throughput against.
#pragma once

namespace speedrun::cli {

// Median TFLOP/s of an 8192^3 bf16 cuBLASLt GEMM (fp32 accumulation, bf16 output) over 10
// runs after 3 warm-ups, timed with CUDA events. Throws std::logic_error in a build
// without CUDA.
double bf16_gemm_ceiling_tflops();

}  // namespace speedrun::cli
