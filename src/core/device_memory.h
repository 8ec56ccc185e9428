// Device (CUDA) memory primitives used by Buffer. Defined in kernels/runtime/memory.cu for CUDA
// builds; CPU-only builds define them to throw (no CUDA tensors can exist there).
#pragma once

#include <cstddef>
#include <memory>

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

// Host-to-device uploads of a micro-batch's inputs (token ids) without a host
// synchronization: each upload is copied into one of `slots` pinned host staging buffers of
// `max_bytes` (cudaHostAlloc), then cudaMemcpyAsync'd on cuda::stream(); an event after the
// copy marks the slot free again. The host waits only when it is about to reuse a slot
// whose copy the device has not reached yet (it is then `slots` uploads ahead of the
// device). During a stream capture (tests: proving a micro-batch has no synchronization)
// no event is recorded or waited on; replaying such a capture is not supported (the
// staging holds the last upload's bytes). Never run on a GPU yet. CPU-only builds: the
// constructor throws std::logic_error.
class HostUploader {
 public:
  explicit HostUploader(size_t max_bytes, int slots = 4);
  ~HostUploader();
  HostUploader(const HostUploader&) = delete;
  HostUploader& operator=(const HostUploader&) = delete;
  // dst (device) = src (host, any memory), `bytes` <= max_bytes (std::invalid_argument
  // otherwise). src may be reused as soon as this returns.
  void upload(void* dst, const void* src, size_t bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Scratch device memory released on every path out (benchmarks' inputs and outputs).
struct DeviceBytes {
  void* p = nullptr;
  explicit DeviceBytes(size_t bytes) : p(device_alloc(bytes)) {}
  ~DeviceBytes() { device_free(p); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
};

}  // namespace speedrun
