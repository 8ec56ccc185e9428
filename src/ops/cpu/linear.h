// Linear layer y = x W^T + b, with W (out, in) as in PyTorch. The GEMMs go to OpenBLAS.
//
// Reproducibility: OpenBLAS 0.3.21 (Debian, OpenMP flavour) with its SkylakeX kernels
// gives bitwise identical sgemm/dgemm results for 1..7 threads on our shapes (it splits
// the output among threads, never the K reduction); with the kernels it picks on AMD
// EPYC the results differ between thread counts in the last bits. It is a property of
// the library and the CPU, not a promise: a run is bitwise reproducible at a fixed
// thread count on one machine; OPENBLAS_CORETYPE pins the kernels across CPU models.
// tests/unit/ops/test_linear.cpp checks the agreement and reports which case holds.
#pragma once

#include <cblas.h>

#include <cstdint>

#include "ops/cpu/reductions.h"

namespace speedrun::ops::cpu {

// Row-major C (m x n) = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n.
// The caller checked that every dimension fits OpenBLAS's int.
inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}
inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                 int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

// y (rows, out) = x (rows, in) W^T + b; b may be null. The bias is added after the
// product (y = fl(fl(x W^T) + b)), a definition a GPU epilogue can reproduce.
template <class T>
void linear_forward(T* y, const T* x, const T* w, const T* b, int64_t rows, int64_t in, int64_t out) {
  if (rows == 0) return;
  gemm(false, true, rows, out, in, T(1), x, in, w, in, T(0), y, out);
  if (b) {
#pragma omp parallel for schedule(static) if (rows * out >= kParallelThreshold)
    for (int64_t n = 0; n < rows; ++n) {
      T* yr = y + n * out;
      for (int64_t o = 0; o < out; ++o) yr[o] += b[o];
    }
  }
}

// dx = (or +=) dy W;  dw += dy^T x;  db += sum_n dy[n, :]. Null outputs are skipped.
template <class T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, int64_t rows, int64_t in, int64_t out,
                     bool accumulate_dx) {
  if (rows == 0) return;
  if (dx) gemm(false, false, rows, in, out, T(1), dy, out, w, in, accumulate_dx ? T(1) : T(0), dx, in);
  if (dw) gemm(true, false, out, in, rows, T(1), dy, out, x, in, T(1), dw, in);
  if (db) add_column_sums(db, rows, out, [&](int64_t n, int64_t o) { return dy[n * out + o]; });
}

}  // namespace speedrun::ops::cpu
