// Matrix products through cuBLASLt, in row-major terms:
//   C (m x n) = alpha op(A) op(B) + beta C  (+ bias[col] with the bias epilogue)
//   bias_grad[i] = sum_k op(A)[i, k]          (with the bias-gradient epilogue)
// op(A) is m x k, op(B) is k x n; A, B and C are row-major with leading dimensions lda, ldb,
// ldc (elements between consecutive rows of the stored matrix).
//
// Types: A and B f32 or bf16 (the same); C f32 or bf16; accumulation and alpha/beta in
// fp32 (CUBLAS_COMPUTE_32F: bf16 products are exact in fp32, sums are fp32; f32 inputs
// get full fp32, not TF32).
//
// Epilogues (cuBLASLt 13.0's cublasLt.h is the source of each rule):
//  - CUBLASLT_EPILOGUE_BIAS: "Bias vector elements are the same type as the elements of
//    output matrix (Dtype)" (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE; the exceptions are IMMA and
//    fp8 kernels, which we do not use). So an f32 C takes an f32 bias (our f32 master
//    parameters) and a bf16 C a bf16 bias (the model's bf16 copy of it); gemm refuses
//    another pairing. The vector runs along cuBLASLt's D rows, i.e. our C's columns (n).
//  - CUBLASLT_EPILOGUE_BGRADB: "Bias gradient based on the input matrix B. The bias size
//    corresponds to the number of columns of the matrix D. The reduction happens over the
//    GEMM's k dimension"; its elements are "the same type as the output elements (Ctype)".
//    cuBLASLt's B is our A and its D columns our C rows, so it gives the row sums of op(A)
//    (m values, of C's type): with A = dy (rows x out) transposed, the bias gradient of
//    dW = dy^T x. cuBLASLt writes it (no accumulation). Whether an algorithm exists for a
//    given type/layout combination is not documented, so gemm asks and reports it.
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
  const void* bias = nullptr;    // length n, added to every row of C (CUBLASLT_EPILOGUE_BIAS)
  DType bias_type = DType::f32;  // must be c_type
  float* bias_grad = nullptr;    // length m, written: row sums of op(A) (CUBLASLT_EPILOGUE_BGRADB); f32 C only
  // A strided batch of `batch` products: matrix i of A, B, C and the bias (or bias gradient)
  // vector start stride_* elements after matrix i - 1's (a stride of 0 shares one matrix).
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0, stride_vector = 0;
};

// Runs the product. Returns false (having computed nothing) only for the optional forms,
// a bias gradient or a batch, when cuBLASLt has no algorithm for them; the caller then
// runs the product without the epilogue or one by one. No algorithm otherwise:
// std::runtime_error naming the product. bias and bias_grad together: std::invalid_argument.
bool gemm(const GemmArgs& args);

}  // namespace speedrun::cuda
