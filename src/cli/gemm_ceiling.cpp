#include "cli/gemm_ceiling.h"

#include <cstdio>

#include "build_info.h"
#include "core/cuda_info.h"
#include "core/error.h"

namespace speedrun::cli {

cuda::GemmCeiling measure_gemm_ceiling(int64_t size, int warmup, int reps) {
#if SPEEDRUN_HAVE_CUDA
  const CudaStatus status = query_cuda();
  if (status.devices.empty()) throw UserError("bf16 GEMM ceiling: no CUDA device: " + status.no_device_reason);
  return cuda::measure_bf16_gemm_ceiling(size, size, size, warmup, reps);
#else
  (void)size, (void)warmup, (void)reps;
  throw UserError("bf16 GEMM ceiling: this binary was built without CUDA");
#endif
}

cuda::GemmCeiling measure_fp8_gemm_ceiling(int64_t size, int warmup, int reps) {
#if SPEEDRUN_HAVE_CUDA
  const CudaStatus status = query_cuda();
  if (status.devices.empty()) throw UserError("FP8 GEMM ceiling: no CUDA device: " + status.no_device_reason);
  return cuda::measure_fp8_gemm_ceiling(size, size, size, warmup, reps);
#else
  (void)size, (void)warmup, (void)reps;
  throw UserError("FP8 GEMM ceiling: this binary was built without CUDA");
#endif
}

void print_gemm_ceiling(const cuda::GemmCeiling& c, const char* what) {
  std::printf("%s GEMM ceiling: %lld x %lld x %lld in %.3f ms (median of %d) = %.1f TFLOP/s\n", what, (long long)c.m,
              (long long)c.n, (long long)c.k, c.median_ms, c.reps, c.tflops);
}

nlohmann::json gemm_ceiling_json(const cuda::GemmCeiling& c) {
  return {{"m", c.m}, {"n", c.n}, {"k", c.k}, {"reps", c.reps}, {"median_ms", c.median_ms}, {"tflops", c.tflops}};
}

}  // namespace speedrun::cli
