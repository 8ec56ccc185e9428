// Sets the GEMM epilogue choice (cuda::set_gemm_epilogue, what SPEEDRUN_GEMM_EPILOGUE selects)
// for a scope and restores the previous one after: the CUDA tests run the linear op and the
// model under both choices.
#pragma once

#include "kernels/ops/ops_cuda.h"

namespace speedrun::test {

class GemmEpilogueScope {
 public:
  explicit GemmEpilogueScope(cuda::GemmEpilogue e) : previous_(cuda::set_gemm_epilogue(e)) {}
  ~GemmEpilogueScope() { cuda::set_gemm_epilogue(previous_); }
  GemmEpilogueScope(const GemmEpilogueScope&) = delete;
  GemmEpilogueScope& operator=(const GemmEpilogueScope&) = delete;

 private:
  cuda::GemmEpilogue previous_;
};

}  // namespace speedrun::test
