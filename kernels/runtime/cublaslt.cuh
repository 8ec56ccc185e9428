// The one cuBLASLt context of the process, shared by the model's products
// (kernels/ops/linear.cu: gemm) and the optimizers' strided-batched products
// (kernels/optim/batched_gemm.cu): one handle, one workspace of kGemmWorkspaceBytes
// (kernels/runtime/workspace_sizes.h, counted by the memory plan), and one cache of plans.
//
// A plan is what cuBLASLt needs to run one kind of product again without asking anything:
// the matmul descriptor, the matrix layouts and the algorithm its heuristic chose (with
// that algorithm's workspace need). Plans are keyed by everything that goes into them
// (LtPlanKey); the caller builds its descriptors and layouts, and lt_choose_algorithm asks
// the heuristic under the same preferences for every caller. The handle and workspace are
// created at the first product. Every product is issued on cuda::stream(), which orders
// the products that share the workspace.
#pragma once

#include <cublasLt.h>

#include <compare>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace speedrun::cuda {

// Everything a plan depends on. A plain product (gemm) has batched = false, batch = 1, zero
// strides, and its C layout serves as D (ldd = ldc, align_d = align_c).
struct LtPlanKey {
  bool batched = false;
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  int64_t lda = 0, stride_a = 0, ldb = 0, stride_b = 0, ldc = 0, stride_c = 0, ldd = 0, stride_d = 0;
  int ab_type = 0, c_type = 0;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;  // a cublasLtEpilogue_t
  int bias_type = -1;                             // the epilogue vector's DType, -1 without one
  bool beta_nonzero = false;
  uint32_t align_a = 0, align_b = 0, align_c = 0, align_d = 0;
  // FP8 products (kernels/ops/fp8_head.cu): the two operand types (they may differ: e5m2 x
  // e4m3) and CUBLASLT_MATMUL_DESC_FAST_ACCUM; -1, -1, false for every other product.
  int fp8_a_type = -1, fp8_b_type = -1;
  bool fast_accum = false;
  uint32_t align_vector = 0;  // the epilogue vector's (the heuristic reads its pointer); 0 without one
  int64_t stride_vector = 0;  // the epilogue vector's batch stride (elements)
  auto operator<=>(const LtPlanKey&) const = default;
};

struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;  // d null: D uses c's layout
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;  // bytes the algorithm uses of the context's workspace
  // False when the heuristic found no algorithm and the plan was made by a caller that
  // can do without it (gemm with a bias-gradient epilogue: lt_find_algorithm).
  bool has_algorithm = true;
  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan();  // errors ignored: this may run at exit, after the driver has gone
  cublasLtMatrixLayout_t d_layout() const { return d ? d : c; }
};

// The cuBLASLt data type of a storage type (f32 or bf16); another throws
// std::invalid_argument starting with `who`.
cudaDataType_t lt_data_type(DType t, const char* who);

// The largest power of two (at most 256) dividing `bits` (an address, or an address or'ed
// with a byte stride): the alignment cuBLASLt may assume, which it otherwise takes as 256.
uint32_t lt_alignment(uint64_t bits);

// A new plan with its matmul descriptor: fp32 accumulation and fp32 alpha/beta
// (CUBLAS_COMPUTE_32F, so f32 inputs get full fp32, not TF32), and the transposes of a
// row-major product: cuBLASLt's A' is the caller's B (op' = trans_b), its B' the caller's A
// (op' = trans_a). The caller adds the layouts (and any epilogue).
std::unique_ptr<LtPlan> lt_new_plan(bool trans_a, bool trans_b);

// Asks cuBLASLt's heuristic for the plan's algorithm (one result) under the context's
// workspace limit and the given minimum alignments of its A', B', C and D (cuBLASLt's
// operands: the row-major callers pass their B as A' and their A as B'), and stores it and
// its workspace size in the plan. No algorithm: std::runtime_error with describe().
void lt_choose_algorithm(cublasLtHandle_t handle, LtPlan& plan, uint32_t align_a, uint32_t align_b, uint32_t align_c,
                         uint32_t align_d, const std::function<std::string()>& describe);
// The same, but no algorithm is an answer: returns false (and sets plan.has_algorithm to
// false) instead of throwing. For optional epilogues whose support cuBLASLt does not
// document per type and layout (the bias gradient, CUBLASLT_EPILOGUE_BGRADB).
bool lt_find_algorithm(cublasLtHandle_t handle, LtPlan& plan, uint32_t align_a, uint32_t align_b, uint32_t align_c,
                       uint32_t align_d);

// Runs run(handle, plan, workspace) with key's plan, made by make(handle) at its first use,
// while holding the context (one product at a time is set up and issued).
void lt_run(const LtPlanKey& key, const std::function<std::unique_ptr<LtPlan>(cublasLtHandle_t)>& make,
            const std::function<void(cublasLtHandle_t, LtPlan&, void* workspace)>& run);

// Drops the cached plans, the workspace and the handle; the next product starts afresh.
// For tests and clean shutdown; not needed otherwise.
void lt_reset();

}  // namespace speedrun::cuda
