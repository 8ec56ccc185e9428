// Small helpers of the device optimizers and their benchmark (optim_cuda.h).
#include <algorithm>
#include <vector>

#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/optim/optim_cuda.h"

namespace speedrun::cuda {

namespace {
bool g_poison = false;
}  // namespace

void set_poison_scratch(bool on) { g_poison = on; }
bool poison_scratch() { return g_poison; }

void copy_state(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void copy_device_async(float* dst, const float* src, int64_t n) {
  if (n <= 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice, stream()));
}

void zero_device_async(float* dst, int64_t n) {
  if (n <= 0) return;
  CUDA_CHECK(cudaMemsetAsync(dst, 0, static_cast<size_t>(n) * sizeof(float), stream()));
}

double time_device_ms(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t start = nullptr, stop = nullptr;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms;
  try {
    for (int i = 0; i < reps; ++i) {
      CUDA_CHECK(cudaEventRecord(start, stream()));
      fn();
      CUDA_CHECK(cudaEventRecord(stop, stream()));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float t = 0.0f;
      CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
      ms.push_back(t);
    }
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    throw;
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  if (ms.empty()) return 0.0;
  std::sort(ms.begin(), ms.end());
  const size_t k = ms.size();
  return k % 2 ? ms[k / 2] : 0.5 * (ms[k / 2 - 1] + ms[k / 2]);
}

}  // namespace speedrun::cuda
