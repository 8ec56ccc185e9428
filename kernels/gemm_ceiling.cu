// The bf16 GEMM ceiling the optimizer benchmark compares Newton-Schulz against: one large
// cuBLASLt bf16 product (fp32 accumulation, bf16 output; the precision Newton-Schulz uses)
// through the same batched wrapper, timed with CUDA events (median of reps after warm-up).
#include <cuda_bf16.h>

#include "core/buffer.h"
#include "kernels/batched_gemm.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/optim_cuda.h"

namespace speedrun::cuda {

double measure_bf16_gemm_tflops(int64_t m, int64_t n, int64_t k, int reps) {
  // Zeroed inputs: the tensor cores' time does not depend on the values.
  Buffer a(Device::cuda, static_cast<size_t>(m * k) * 2), b(Device::cuda, static_cast<size_t>(k * n) * 2),
      d(Device::cuda, static_cast<size_t>(m * n) * 2);
  const BatchedGemmArgs args{.m = m, .n = n, .k = k, .a = a.data(), .lda = k, .b = b.data(), .ldb = n,
                             .d = d.data(), .ldd = n, .ab_type = DType::bf16, .cd_type = DType::bf16};
  const double ms = time_device_ms([&] { batched_gemm(args); }, 3, reps);
  CUDA_CHECK(cudaDeviceSynchronize());  // before the buffers are freed
  return ms > 0.0 ? 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) / (ms * 1e9) : 0.0;
}

}  // namespace speedrun::cuda
