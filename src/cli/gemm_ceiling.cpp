#include "cli/gemm_ceiling.h"

#include <stdexcept>

#include "build_info.h"
#if SPEEDRUN_HAVE_CUDA
#include "kernels/optim_cuda.h"
#endif

namespace speedrun::cli {

double bf16_gemm_ceiling_tflops() {
#if SPEEDRUN_HAVE_CUDA
  return cuda::measure_bf16_gemm_tflops(8192, 8192, 8192, 10);
#else
  throw std::logic_error("bf16_gemm_ceiling_tflops: built without CUDA");
#endif
}

}  // namespace speedrun::cli
