// Matrix products through cuBLASLt, in row-major terms:
//   C (m x n) = alpha op(A) op(B) + beta C  (+ bias[col] with the bias epilogue)
// op(A) is m x k, op(B) is k x n; A, B and C are row-major with leading dimensions lda, ldb,
// ldc (elements between consecutive rows of the stored matrix).
//
// Types: A and B f32 or bf16 (the same); C f32 or bf16; accumulation and alpha/beta in
// fp32 (CUBLAS_COMPUTE_32F: bf16 products are exact in fp32, sums are fp32; f32 inputs
// get full fp32, not TF32). The bias epilogue (f32 bias) is offered only for an f32 C:
// cuBLASLt wants the bias in C's type, and our biases are f32 master parameters.
//
// The algorithm is chosen by cublasLtMatmulAlgoGetHeuristic once per (shape, transposes,
// types, leading dimensions, epilogue, beta == 0, pointer alignments) and cached with its
// descriptors; later calls with that key only set the bias pointer and launch. Handle,
// plan cache and 32 MiB workspace are the process's one cuBLASLt context
// (kernels/runtime/cublaslt.cuh), shared with the optimizers' batched_gemm; calls are
// issued on cuda::stream().
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace speedrun::cuda {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* c = nullptr;  // read when beta != 0, always written
  int64_t ldc = 0;
  DType ab_type = DType::bf16;
  DType c_type = DType::f32;
  float alpha = 1.0f, beta = 0.0f;
  const float* bias = nullptr;  // length n, added to every row of C; only with c_type f32
};

void gemm(const GemmArgs& args);

}  // namespace speedrun::cuda
