// See batched_gemm.cuh. Row-major to cuBLASLt's column-major exactly as kernels/ops/linear.cu:
// the row-major D (m x n) is the column-major D^T (n x m), so cuBLASLt computes
// D' = op'(A') op'(B') with A' = B (op' = trans_b), B' = A (op' = trans_a), M' = n, N' = m.
// Batches: CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT / STRIDED_BATCH_OFFSET on every layout. The
// handle, workspace and plan cache are the process's one cuBLASLt context
// (kernels/runtime/cublaslt.cuh), shared with the model's GEMMs.
#include <cublasLt.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "kernels/optim/batched_gemm.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cublaslt.cuh"
#include "kernels/runtime/cuda_check.cuh"

namespace speedrun::cuda {
namespace {

// The alignment cuBLASLt may assume for every matrix of a batch: the largest power of two
// (at most 256) dividing the base address and the byte stride between matrices.
uint32_t alignment(const void* p, int64_t stride, DType t) {
  return lt_alignment(reinterpret_cast<uintptr_t>(p) | static_cast<uint64_t>(stride) * dtype_size(t));
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld, int64_t batch,
                                   int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld));
  const int32_t count = static_cast<int32_t>(batch);
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
  CUBLAS_CHECK(
      cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  return layout;
}

std::unique_ptr<LtPlan> make_plan(cublasLtHandle_t handle, const BatchedGemmArgs& g, int64_t ldc, int64_t stride_c,
                                  uint32_t align_a, uint32_t align_b, uint32_t align_c, uint32_t align_d) {
  std::unique_ptr<LtPlan> plan = lt_new_plan(g.trans_a, g.trans_b);
  const cudaDataType_t ab = lt_data_type(g.ab_type, "batched_gemm"), cd = lt_data_type(g.cd_type, "batched_gemm");
  const uint64_t a_rows = g.trans_b ? g.k : g.n, a_cols = g.trans_b ? g.n : g.k;
  const uint64_t b_rows = g.trans_a ? g.m : g.k, b_cols = g.trans_a ? g.k : g.m;
  plan->a = make_layout(ab, a_rows, a_cols, g.ldb, g.batch, g.stride_b);
  plan->b = make_layout(ab, b_rows, b_cols, g.lda, g.batch, g.stride_a);
  plan->c = make_layout(cd, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.m), ldc, g.batch, stride_c);
  plan->d = make_layout(cd, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.m), g.ldd, g.batch, g.stride_d);
  // A' is our B and B' our A.
  lt_choose_algorithm(handle, *plan, align_b, align_a, align_c, align_d, [&] {
    return "a batch of " + std::to_string(g.batch) + " " + std::to_string(g.m) + " x " + std::to_string(g.n) + " x " +
           std::to_string(g.k) + " " + dtype_name(g.ab_type) + " -> " + dtype_name(g.cd_type) + " products";
  });
  return plan;
}

}  // namespace

void batched_gemm(const BatchedGemmArgs& g) {
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  if (g.k <= 0) throw std::invalid_argument("batched_gemm: k = 0");
  const void* c = g.c ? g.c : g.d;
  const int64_t ldc = g.c ? g.ldc : g.ldd, stride_c = g.c ? g.stride_c : g.stride_d;
  const uint32_t align_a = alignment(g.a, g.stride_a, g.ab_type), align_b = alignment(g.b, g.stride_b, g.ab_type);
  const uint32_t align_c = alignment(c, stride_c, g.cd_type), align_d = alignment(g.d, g.stride_d, g.cd_type);
  const LtPlanKey key{.batched = true, .trans_a = g.trans_a, .trans_b = g.trans_b, .m = g.m, .n = g.n, .k = g.k,
                      .batch = g.batch, .lda = g.lda, .stride_a = g.stride_a, .ldb = g.ldb, .stride_b = g.stride_b,
                      .ldc = ldc, .stride_c = stride_c, .ldd = g.ldd, .stride_d = g.stride_d,
                      .ab_type = static_cast<int>(g.ab_type), .c_type = static_cast<int>(g.cd_type),
                      .beta_nonzero = g.beta != 0.0f, .align_a = align_a, .align_b = align_b, .align_c = align_c,
                      .align_d = align_d};
  lt_run(
      key,
      [&](cublasLtHandle_t handle) {
        return make_plan(handle, g, ldc, stride_c, align_a, align_b, align_c, align_d);
      },
      [&](cublasLtHandle_t handle, LtPlan& p, void* workspace) {
        CUBLAS_CHECK(cublasLtMatmul(handle, p.desc, &g.alpha, g.b, p.a, g.a, p.b, &g.beta, c, p.c, g.d, p.d, &p.algo,
                                    workspace, p.workspace, stream()));
      });
}

}  // namespace speedrun::cuda
