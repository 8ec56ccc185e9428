// query_cuda() for CUDA builds: devices through the runtime, library versions through
// the libraries themselves (which also proves at run time that they are linked).
#include <cstdio>
#include <string>

#include "build_info.h"
#include "core/cuda_info.h"
#include "kernels/runtime/cuda_check.cuh"
#if SPEEDRUN_HAVE_NCCL
#include <nccl.h>
#endif

namespace speedrun {

static std::string cuda_version_string(int v) {
  // CUDA encodes versions as 1000*major + 10*minor.
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// Why cudaGetDeviceCount found no device, in words that match the cause. The runtime
// reports a missing driver as cudaErrorInsufficientDriver ("CUDA driver version is
// insufficient for CUDA runtime version"), which suggests a driver exists: only when one
// does (driver version > 0) is it really too old.
static std::string no_device_reason(cudaError_t err, bool have_driver, int driver, int runtime) {
  const std::string code = err == cudaSuccess ? std::string() : std::string(" (") + cudaGetErrorName(err) + ")";
  if (!have_driver) return "no NVIDIA driver is installed (libcuda.so.1 was not found)" + code;
  if (err == cudaErrorInsufficientDriver)
    return "the NVIDIA driver supports CUDA " + cuda_version_string(driver) + ", older than this binary's CUDA " +
           cuda_version_string(runtime) + " runtime: update the driver" + code;
  if (err == cudaErrorNoDevice || err == cudaSuccess)
    return "the NVIDIA driver (CUDA " + cuda_version_string(driver) +
           ") sees no CUDA device (is CUDA_VISIBLE_DEVICES set to an empty or wrong list?)" + code;
  return std::string(cudaGetErrorString(err)) + code;
}

CudaStatus query_cuda() {
  CudaStatus s;
  s.built_with_cuda = true;
  int rt = 0;
  if (cudaRuntimeGetVersion(&rt) == cudaSuccess) s.runtime_version = cuda_version_string(rt);
  // cudaDriverGetVersion gives 0 when no driver (libcuda.so.1) is installed.
  int drv = 0;
  const bool have_driver = cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0;
  s.driver_version = have_driver ? cuda_version_string(drv) : "none";
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
    s.cublas_version = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  if (cusolverGetProperty(MAJOR_VERSION, &major) == CUSOLVER_STATUS_SUCCESS &&
      cusolverGetProperty(MINOR_VERSION, &minor) == CUSOLVER_STATUS_SUCCESS &&
      cusolverGetProperty(PATCH_LEVEL, &patch) == CUSOLVER_STATUS_SUCCESS)
    s.cusolver_version = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
#if SPEEDRUN_HAVE_NCCL
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess) {
    // NCCL >= 2.9 encodes 10000*major + 100*minor + patch.
    s.nccl_version = std::to_string(nccl / 10000) + "." + std::to_string((nccl % 10000) / 100) + "." +
                     std::to_string(nccl % 100);
  }
#endif

  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    s.no_device_reason = no_device_reason(err, have_driver, drv, rt);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return s;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    CudaDevice d;
    d.index = i;
    d.name = p.name;
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    d.total_memory = p.totalGlobalMem;
    d.sm_count = p.multiProcessorCount;
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) d.free_memory = free_b;
    s.devices.push_back(d);
  }
  if (s.devices.empty()) s.no_device_reason = "no device's properties could be read";
  return s;
}

}  // namespace speedrun
