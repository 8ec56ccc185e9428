// See device_timing.h.
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/runtime/device_timing.h"

namespace speedrun::cuda {

EventTimer::EventTimer() {
  cudaEvent_t a = nullptr, b = nullptr;
  CUDA_CHECK(cudaEventCreate(&a));
  const cudaError_t err = cudaEventCreate(&b);
  if (err != cudaSuccess) cudaEventDestroy(a);
  CUDA_CHECK(err);
  start_ = a;
  stop_ = b;
}

EventTimer::~EventTimer() {  // errors ignored: a destructor must not throw
  cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void EventTimer::start() { CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(start_), stream())); }

double EventTimer::stop_ms() {
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(stop_), stream()));
  CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
  float ms = 0.0f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)));
  return static_cast<double>(ms);
}

void synchronize_stream() { CUDA_CHECK(cudaStreamSynchronize(stream())); }

}  // namespace speedrun::cuda
