// See bench_support.h.
#include <cuda_bf16.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/device_memory.h"
#include "kernels/runtime/bench_support.h"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/runtime/device_timing.h"

namespace speedrun::cuda {
namespace {

__device__ __forceinline__ float hash_unit(int64_t i, uint32_t salt) {  // in [0, 1)
  uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ salt ^ static_cast<uint32_t>(i >> 32) * 0x85ebca6bu;
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  h *= 3266489917u;
  h ^= h >> 16;
  return static_cast<float>(h >> 8) * (1.0f / 16777216.0f);
}

template <class T>
__global__ void fill_kernel(T* p, int64_t n, float lo, float span, uint32_t salt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float x = lo + span * hash_unit(i, salt);
    if constexpr (std::is_same_v<T, int32_t>) {
      p[i] = min(static_cast<int32_t>(x), static_cast<int32_t>(lo + span) - 1);
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      p[i] = __float2bfloat16(x);
    } else {
      p[i] = x;
    }
  }
}

}  // namespace

void fill_pseudo_random(void* p, DType dtype, int64_t n, double lo, double hi, uint32_t salt) {
  if (!(hi > lo)) throw std::invalid_argument("fill_pseudo_random: hi must be greater than lo");
  if (n <= 0) return;
  const float flo = static_cast<float>(lo), span = static_cast<float>(hi - lo);
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(4096, (n + 255) / 256));
  switch (dtype) {
    case DType::f32:
      fill_kernel<<<blocks, 256, 0, stream()>>>(static_cast<float*>(p), n, flo, span, salt);
      break;
    case DType::bf16:
      fill_kernel<<<blocks, 256, 0, stream()>>>(static_cast<__nv_bfloat16*>(p), n, flo, span, salt);
      break;
    case DType::i32:
      fill_kernel<<<blocks, 256, 0, stream()>>>(static_cast<int32_t*>(p), n, flo, span, salt);
      break;
    default:
      throw std::invalid_argument(std::string("fill_pseudo_random: dtype ") + dtype_name(dtype) +
                                  " (expected f32, bf16 or i32)");
  }
  CUDA_CHECK_LAUNCH();
}

CopyBandwidth measure_copy_bandwidth(size_t bytes, int warmup, int reps) {
  if (bytes == 0 || reps < 1 || warmup < 0) throw std::invalid_argument("measure_copy_bandwidth: bytes and reps > 0");
  DeviceBytes a(bytes), b(bytes);
  CUDA_CHECK(cudaMemsetAsync(a.p, 0x5a, bytes, stream()));
  for (int i = 0; i < warmup; ++i)
    CUDA_CHECK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, stream()));
  EventTimer timer;
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    timer.start();
    CUDA_CHECK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, stream()));
    ms.push_back(timer.stop_ms());
  }
  std::sort(ms.begin(), ms.end());
  CopyBandwidth r{.bytes = bytes, .reps = reps, .median_ms = ms[ms.size() / 2]};
  r.gb_per_s = 2.0 * static_cast<double>(bytes) / (r.median_ms * 1e-3) / 1e9;
  synchronize_stream();
  return r;
}

}  // namespace speedrun::cuda
