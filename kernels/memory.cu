// Device memory for Buffer: cudaMalloc with an out-of-memory message that says how
// much was asked and how much was free.
#include <string>

#include "core/device_memory.h"
#include "core/error.h"
#include "kernels/cuda_check.cuh"

namespace speedrun {

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the error
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    auto gib = [](size_t b) { return std::to_string(static_cast<double>(b) / (1ull << 30)).substr(0, 5) + " GiB"; };
    throw UserError("CUDA out of memory: asked for " + gib(bytes) + ", " + gib(free_b) + " free of " + gib(total_b));
  }
  CUDA_CHECK(err);
  return p;
}

void device_free(void* ptr) { cudaFree(ptr); }

void device_memset_zero(void* ptr, size_t bytes) { CUDA_CHECK(cudaMemset(ptr, 0, bytes)); }

void device_copy(void* dst, const void* src, size_t bytes) { CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault)); }

}  // namespace speedrun
