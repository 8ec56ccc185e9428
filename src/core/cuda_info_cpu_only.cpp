// query_cuda() for binaries built without the CUDA toolkit; the CUDA build defines it
// in kernels/runtime/device_info.cu instead.
#include "build_info.h"
#include "core/cuda_info.h"

#if !SPEEDRUN_HAVE_CUDA
namespace speedrun {
CudaStatus query_cuda() {
  CudaStatus s;
  s.no_device_reason = "this binary was built without CUDA (nvcc was not found at configure time)";
  return s;
}
}  // namespace speedrun
#endif
