// See context.cuh.
#include <mutex>

#include "core/device_memory.h"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"

namespace speedrun::cuda {
namespace {

cudaStream_t g_stream = nullptr;

struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
  std::mutex mutex;
};
Workspace& scratch() {
  static Workspace w;  // never freed: it lives until the process ends
  return w;
}

}  // namespace

cudaStream_t stream() { return g_stream; }
void set_stream(cudaStream_t s) { g_stream = s; }

void* workspace(size_t bytes) {
  Workspace& w = scratch();
  std::lock_guard<std::mutex> lock(w.mutex);
  if (bytes > w.bytes) {
    if (w.ptr) CUDA_CHECK(cudaFree(w.ptr));  // synchronizes: earlier users are done
    w.ptr = nullptr;
    w.bytes = 0;
    // Round up to 1 MiB so that slowly growing requests do not reallocate every time.
    const size_t rounded = (bytes + (1u << 20) - 1) & ~static_cast<size_t>((1u << 20) - 1);
    w.ptr = device_alloc(rounded);  // out of memory: a UserError with the sizes asked and free
    w.bytes = rounded;
  }
  return w.ptr;
}

}  // namespace speedrun::cuda
