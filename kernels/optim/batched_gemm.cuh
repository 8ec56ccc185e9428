// Strided-batched matrix products through cuBLASLt for the optimizers, in row-major
// terms (the same convention and derivation as kernels/ops/linear.cuh):
//   for i < batch:  D_i (m x n) = alpha op(A_i) op(B_i) + beta C_i
// with X_i = X + i * stride_x elements. Unlike gemm(), C and D may differ (the
// Newton-Schulz step X' = B X + a X reads X as C and writes X'), and batches of
// same-shaped matrices go out as one launch.
//
// Types: A and B f32 or bf16 (the same); C and D f32 or bf16 (the same); fp32
// accumulation and fp32 alpha/beta (CUBLAS_COMPUTE_32F: f32 inputs get full fp32, not
// TF32). The algorithm is chosen once per key (shape, strides, types, beta == 0, pointer
// and stride alignments) and cached with its descriptors in the process's one cuBLASLt
// context (kernels/runtime/cublaslt.cuh: handle, plan cache and 32 MiB workspace, shared
// with the model's GEMMs); issued on cuda::stream().
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace speedrun::cuda {

struct BatchedGemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t batch = 1;
  const void* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  const void* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  const void* c = nullptr;  // read when beta != 0 (may equal d); null means d
  int64_t ldc = 0, stride_c = 0;
  void* d = nullptr;
  int64_t ldd = 0, stride_d = 0;
  DType ab_type = DType::bf16;
  DType cd_type = DType::bf16;
  float alpha = 1.0f, beta = 0.0f;
};

void batched_gemm(const BatchedGemmArgs& args);

}  // namespace speedrun::cuda
