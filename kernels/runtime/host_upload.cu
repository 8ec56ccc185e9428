// HostUploader (core/device_memory.h): pinned staging slots, cudaMemcpyAsync on the compute
// stream, one event per slot. Never run on a GPU yet.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/device_memory.h"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"

namespace speedrun {

struct HostUploader::Impl {
  size_t max_bytes = 0;
  std::vector<void*> staging;         // pinned host buffers
  std::vector<cudaEvent_t> done;      // recorded after each slot's last copy
  std::vector<bool> recorded;         // done[i] was recorded (outside a capture)
  size_t next = 0;
  ~Impl() {
    for (void* p : staging) cudaFreeHost(p);
    for (cudaEvent_t e : done) cudaEventDestroy(e);
  }
};

HostUploader::HostUploader(size_t max_bytes, int slots) : impl_(std::make_unique<Impl>()) {
  if (slots < 1) throw std::invalid_argument("HostUploader: at least one slot");
  impl_->max_bytes = max_bytes;
  for (int i = 0; i < slots; ++i) {
    void* p = nullptr;
    CUDA_CHECK(cudaHostAlloc(&p, max_bytes > 0 ? max_bytes : 1, cudaHostAllocDefault));
    impl_->staging.push_back(p);
    cudaEvent_t e = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    impl_->done.push_back(e);
    impl_->recorded.push_back(false);
  }
}

HostUploader::~HostUploader() = default;

void HostUploader::upload(void* dst, const void* src, size_t bytes) {
  if (bytes > impl_->max_bytes)
    throw std::invalid_argument("HostUploader: " + std::to_string(bytes) + " bytes, staging holds " +
                                std::to_string(impl_->max_bytes));
  if (bytes == 0) return;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(cuda::stream(), &capture));
  const bool capturing = capture != cudaStreamCaptureStatusNone;
  const size_t slot = impl_->next;
  impl_->next = (slot + 1) % impl_->staging.size();
  // The slot's previous copy must have left the staging buffer before it is overwritten.
  if (!capturing && impl_->recorded[slot]) CUDA_CHECK(cudaEventSynchronize(impl_->done[slot]));
  std::memcpy(impl_->staging[slot], src, bytes);
  CUDA_CHECK(cudaMemcpyAsync(dst, impl_->staging[slot], bytes, cudaMemcpyHostToDevice, cuda::stream()));
  if (!capturing) CUDA_CHECK(cudaEventRecord(impl_->done[slot], cuda::stream()));
  impl_->recorded[slot] = !capturing;
}

}  // namespace speedrun
