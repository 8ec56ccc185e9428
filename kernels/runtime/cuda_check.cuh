// Checks for every CUDA, cuBLAS, cuSOLVER and NCCL call: a failure throws with the
// call site and the library's own description of the error.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <stdexcept>
#include <string>

namespace speedrun::cuda {

[[noreturn]] inline void throw_cuda_error(const char* what, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error: ") + what + " in " + expr + " at " + file + ":" +
                           std::to_string(line));
}

inline const char* cublas_status_string(cublasStatus_t s) { return cublasGetStatusString(s); }

}  // namespace speedrun::cuda

#define CUDA_CHECK(expr)                                                                                \
  do {                                                                                                  \
    const cudaError_t err_ = (expr);                                                                    \
    if (err_ != cudaSuccess)                                                                            \
      ::speedrun::cuda::throw_cuda_error(cudaGetErrorString(err_), #expr, __FILE__, __LINE__);          \
  } while (0)

// Checks the most recent kernel launch (configuration errors surface here).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#define CUBLAS_CHECK(expr)                                                                              \
  do {                                                                                                  \
    const cublasStatus_t st_ = (expr);                                                                  \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                   \
      ::speedrun::cuda::throw_cuda_error(cublasGetStatusString(st_), #expr, __FILE__, __LINE__);        \
  } while (0)

#define CUSOLVER_CHECK(expr)                                                                            \
  do {                                                                                                  \
    const cusolverStatus_t st_ = (expr);                                                                \
    if (st_ != CUSOLVER_STATUS_SUCCESS)                                                                 \
      ::speedrun::cuda::throw_cuda_error(("cusolver status " + std::to_string(static_cast<int>(st_))).c_str(), \
                                         #expr, __FILE__, __LINE__);                                    \
  } while (0)
