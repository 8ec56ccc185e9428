// See gemm_ceiling.h.
#include <cuda_bf16.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "core/device_memory.h"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/runtime/device_timing.h"
#include "kernels/ops/linear.cuh"
#include "kernels/ops/ops_cuda.h"
#include "kernels/runtime/gemm_ceiling.h"

namespace speedrun::cuda {
namespace {

// Values in [-1, 1) from an integer hash of the index: cheap, deterministic, not zero.
__global__ void fill_pseudo_random(__nv_bfloat16* p, int64_t n, uint32_t salt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ salt;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = __float2bfloat16(static_cast<float>(h & 0xffff) / 32768.0f - 1.0f);
  }
}

}  // namespace

GemmCeiling measure_bf16_gemm_ceiling(int64_t m, int64_t n, int64_t k, int warmup, int reps) {
  if (m <= 0 || n <= 0 || k <= 0 || reps < 1 || warmup < 0)
    throw std::invalid_argument("measure_bf16_gemm_ceiling: sizes and reps must be positive");
  const size_t e = sizeof(__nv_bfloat16);
  DeviceBytes a(static_cast<size_t>(m * k) * e), b(static_cast<size_t>(k * n) * e), c(static_cast<size_t>(m * n) * e);
  fill_pseudo_random<<<1024, 256, 0, stream()>>>(static_cast<__nv_bfloat16*>(a.p), m * k, 0x9e3779b9u);
  CUDA_CHECK_LAUNCH();
  fill_pseudo_random<<<1024, 256, 0, stream()>>>(static_cast<__nv_bfloat16*>(b.p), k * n, 0x85ebca6bu);
  CUDA_CHECK_LAUNCH();
  // C = A B, all row-major, no transposes.
  const GemmArgs g{.m = m, .n = n, .k = k, .a = a.p, .lda = k, .b = b.p, .ldb = n, .c = c.p, .ldc = n,
                   .ab_type = DType::bf16, .c_type = DType::bf16};
  for (int i = 0; i < warmup; ++i) gemm(g);
  EventTimer timer;
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    timer.start();
    gemm(g);
    ms.push_back(timer.stop_ms());
  }
  std::sort(ms.begin(), ms.end());
  GemmCeiling r{.m = m, .n = n, .k = k, .reps = reps, .median_ms = ms[ms.size() / 2]};
  r.tflops = 2.0 * double(m) * double(n) * double(k) / (r.median_ms * 1e-3) / 1e12;
  synchronize_stream();  // nothing of ours may still run when the buffers are freed
  return r;
}

GemmCeiling measure_fp8_gemm_ceiling(int64_t m, int64_t n, int64_t k, int warmup, int reps) {
  if (m <= 0 || n <= 0 || k <= 0 || reps < 1 || warmup < 0)
    throw std::invalid_argument("measure_fp8_gemm_ceiling: sizes and reps must be positive");
  const size_t e = sizeof(__nv_bfloat16);
  DeviceBytes a16(static_cast<size_t>(m * k) * e), b16(static_cast<size_t>(k * n) * e);
  DeviceBytes a(static_cast<size_t>(m * k)), b(static_cast<size_t>(k * n)), c(static_cast<size_t>(m * n) * e);
  fill_pseudo_random<<<1024, 256, 0, stream()>>>(static_cast<__nv_bfloat16*>(a16.p), m * k, 0x9e3779b9u);
  CUDA_CHECK_LAUNCH();
  fill_pseudo_random<<<1024, 256, 0, stream()>>>(static_cast<__nv_bfloat16*>(b16.p), k * n, 0x85ebca6bu);
  CUDA_CHECK_LAUNCH();
  // Values in [-1, 1) scaled into e4m3's range (max 448): most codes are used.
  fp8_quantize(DType::e4m3, a.p, nullptr, DType::bf16, a16.p, m, k, 1.0f / 256, false);
  fp8_quantize(DType::e4m3, b.p, nullptr, DType::bf16, b16.p, n, k, 1.0f / 256, false);
  auto product = [&] { fp8_gemm_tn(DType::bf16, c.p, DType::e4m3, a.p, DType::e4m3, b.p, m, n, k, 1.0f, 0.0f, true); };
  for (int i = 0; i < warmup; ++i) product();
  EventTimer timer;
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    timer.start();
    product();
    ms.push_back(timer.stop_ms());
  }
  std::sort(ms.begin(), ms.end());
  GemmCeiling r{.m = m, .n = n, .k = k, .reps = reps, .median_ms = ms[ms.size() / 2]};
  r.tflops = 2.0 * double(m) * double(n) * double(k) / (r.median_ms * 1e-3) / 1e12;
  synchronize_stream();
  return r;
}

}  // namespace speedrun::cuda
