// Device-memory primitives for binaries built without CUDA (compiled only there: CMakeLists.txt
// drops *_cpu_only.cpp from CUDA builds): no device exists, so reaching them is a logic
// error (device choice rejects CUDA earlier, with a message).
#include <stdexcept>

#include "core/device_memory.h"
#include "core/error.h"

namespace speedrun {
static void no_cuda() { throw std::logic_error("CUDA memory requested in a binary built without CUDA"); }
void* device_alloc(size_t) {
  no_cuda();
  return nullptr;
}
void device_free(void*) {}
void device_memset_zero(void*, size_t) { no_cuda(); }
void device_copy(void*, const void*, size_t) { no_cuda(); }
struct HostUploader::Impl {};
HostUploader::HostUploader(size_t, int) { no_cuda(); }
HostUploader::~HostUploader() = default;
void HostUploader::upload(void*, const void*, size_t) { no_cuda(); }
void device_memory_info(size_t*, size_t*) {
  throw UserError("no CUDA device memory to query: this binary was built without CUDA");
}
}  // namespace speedrun
