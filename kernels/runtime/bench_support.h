// Device helpers for the benches (speedrun bench --kernels; never used in training):
// pseudo-random fills of bench tensors and the measured device-to-device copy bandwidth, the
// ceiling memory-bound kernels are compared with (docs/cuda.md, "speedrun bench --kernels").
// Plain C++ header; defined in kernels/runtime/bench_support.cu, CUDA builds only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace speedrun::cuda {

// Fills n elements of `dtype` (f32, bf16 or i32) at device pointer p with values from an
// integer hash of the index and `salt` (deterministic, never all zeros: timings on zeros run
// faster than on real data): floats uniform in [lo, hi), i32 in [lo, hi) truncated to
// integers (token ids). Asynchronous on cuda::stream(). std::invalid_argument for another
// dtype or hi <= lo.
void fill_pseudo_random(void* p, DType dtype, int64_t n, double lo, double hi, uint32_t salt);

struct CopyBandwidth {
  size_t bytes = 0;        // bytes copied per rep (each read once and written once)
  int reps = 0;
  double median_ms = 0.0;  // per copy
  double gb_per_s = 0.0;   // 2 bytes / median time (read + write), 1e9 bytes
};

// cudaMemcpyAsync device-to-device of `bytes` (a buffer several times the L2), `warmup`
// untimed copies, then `reps` timed one by one with CUDA events; the median. Allocates and
// frees its two buffers.
CopyBandwidth measure_copy_bandwidth(size_t bytes, int warmup, int reps);

}  // namespace speedrun::cuda
