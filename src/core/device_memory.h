// Device (CUDA) memory primitives used by Buffer. Defined in kernels/runtime/memory.cu for CUDA
// builds; CPU-only builds define them to throw (no CUDA tensors can exist there).
#pragma once

#include <cstddef>

namespace speedrun {

// Allocates device memory; throws UserError saying how much was asked and how much
// was free when the device is out of memory.
void* device_alloc(size_t bytes);
void device_free(void* ptr);
void device_memset_zero(void* ptr, size_t bytes);
// Copies between host and device memory (direction from the pointers' kinds).
void device_copy(void* dst, const void* src, size_t bytes);
// Free and total memory of the current device (cudaMemGetInfo). Throws UserError when no
// device can be queried (and in binaries built without CUDA).
void device_memory_info(size_t* free_bytes, size_t* total_bytes);

// Scratch device memory released on every path out (benchmarks' inputs and outputs).
struct DeviceBytes {
  void* p = nullptr;
  explicit DeviceBytes(size_t bytes) : p(device_alloc(bytes)) {}
  ~DeviceBytes() { device_free(p); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
};

}  // namespace speedrun
