// query_cuda() for binaries built without the CUDA toolkit; the CUDA build defines it
// in kernels/runtime/device_info.cu instead (CMakeLists.txt drops *_cpu_only.cpp from CUDA builds).
#include "core/cuda_info.h"

namespace speedrun {
CudaStatus query_cuda() {
  CudaStatus s;
  s.no_device_reason = "this binary was built without CUDA (nvcc was not found at configure time)";
  return s;
}
}  // namespace speedrun
