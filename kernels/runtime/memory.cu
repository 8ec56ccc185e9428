// Device memory for Buffer: cudaMalloc with an out-of-memory message that says how much
// was asked and how much was free.
#include <string>

#include "core/device_memory.h"
#include "core/error.h"
#include "core/format_bytes.h"
#include "kernels/runtime/cuda_check.cuh"

namespace speedrun {

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the (non-sticky) error so that later calls do not see it
    size_t free_b = 0, total_b = 0;
    const bool known = cudaMemGetInfo(&free_b, &total_b) == cudaSuccess;
    throw UserError("CUDA out of memory: asked for " + format_bytes(bytes) + " (" + std::to_string(bytes) +
                    " bytes), " +
                    (known ? format_bytes(free_b) + " free of " + format_bytes(total_b)
                           : std::string("free memory unknown")) +
                    " on the device; lower train.micro_batch_seqs or use a larger device");
  }
  CUDA_CHECK(err);
  return p;
}

void device_free(void* ptr) { cudaFree(ptr); }

void device_memset_zero(void* ptr, size_t bytes) { CUDA_CHECK(cudaMemset(ptr, 0, bytes)); }

void device_copy(void* dst, const void* src, size_t bytes) { CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault)); }

void device_memory_info(size_t* free_bytes, size_t* total_bytes) {
  const cudaError_t err = cudaMemGetInfo(free_bytes, total_bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw UserError(std::string("cannot query the CUDA device's memory: ") + cudaGetErrorString(err));
  }
}

}  // namespace speedrun
