// See batched_gemm.cuh. Row-major to cuBLASLt's column-major exactly as kernels/ops/linear.cu:
// the row-major D (m x n) is the column-major D^T (n x m), so cuBLASLt computes
// D' = op'(A') op'(B') with A' = B (op' = trans_b), B' = A (op' = trans_a), M' = n, N' = m.
// Batches: CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT / STRIDED_BATCH_OFFSET on every layout.
#include <cublasLt.h>

#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include "kernels/optim/batched_gemm.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"

namespace speedrun::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw std::invalid_argument(std::string("batched_gemm: unsupported dtype ") + dtype_name(t));
  }
}

// The alignment cuBLASLt may assume for every matrix of a batch: the largest power of two
// (at most 256) dividing the base address and the byte stride between matrices.
uint32_t alignment(const void* p, int64_t stride, DType t) {
  const uint64_t a = reinterpret_cast<uintptr_t>(p) | static_cast<uint64_t>(stride) * dtype_size(t);
  uint32_t align = 256;
  while (align > 1 && (a % align) != 0) align >>= 1;
  return align;
}

using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int, int, bool, uint32_t, uint32_t, uint32_t, uint32_t>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  ~Plan() {  // errors ignored: this may run at exit, after the driver has gone
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

struct State {
  std::mutex mutex;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans;
};
State& state() {
  static State s;  // never destroyed explicitly: lives until the process ends
  return s;
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

std::unique_ptr<Plan> make_plan(cublasLtHandle_t handle, const BatchedGemmArgs& g, int64_t ldc, int64_t stride_c,
                                uint32_t align_a, uint32_t align_b, uint32_t align_c, uint32_t align_d) {
  auto plan = std::make_unique<Plan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // A' = B
  const cublasOperation_t op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // B' = A
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  const cudaDataType_t ab = cuda_type(g.ab_type), cd = cuda_type(g.cd_type);
  const uint64_t a_rows = g.trans_b ? g.k : g.n, a_cols = g.trans_b ? g.n : g.k;
  const uint64_t b_rows = g.trans_a ? g.m : g.k, b_cols = g.trans_a ? g.k : g.m;
  plan->a = make_layout(ab, a_rows, a_cols, g.ldb, g.batch, g.stride_b);
  plan->b = make_layout(ab, b_rows, b_cols, g.lda, g.batch, g.stride_a);
  plan->c = make_layout(cd, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.m), ldc, g.batch, stride_c);
  plan->d = make_layout(cd, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.m), g.ldd, g.batch, g.stride_d);

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  try {
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_b,
                                                      sizeof(align_b)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_a,
                                                      sizeof(align_a)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                                      sizeof(align_c)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d,
                                                      sizeof(align_d)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->c, plan->d, pref, 1,
                                                &result, &found));
    if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS) {
      throw std::runtime_error("cuBLASLt has no algorithm for a batch of " + std::to_string(g.batch) + " " +
                               std::to_string(g.m) + " x " + std::to_string(g.n) + " x " + std::to_string(g.k) + " " +
                               dtype_name(g.ab_type) + " -> " + dtype_name(g.cd_type) + " products");
    }
    plan->algo = result.algo;
    plan->workspace = result.workspaceSize;
  } catch (...) {
    cublasLtMatmulPreferenceDestroy(pref);
    throw;
  }
  CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  return plan;
}

}  // namespace

void batched_gemm(const BatchedGemmArgs& g) {
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  if (g.k <= 0) throw std::invalid_argument("batched_gemm: k = 0");
  const void* c = g.c ? g.c : g.d;
  const int64_t ldc = g.c ? g.ldc : g.ldd, stride_c = g.c ? g.stride_c : g.stride_d;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.handle) {
    CUBLAS_CHECK(cublasLtCreate(&s.handle));
    CUDA_CHECK(cudaMalloc(&s.workspace, kWorkspaceBytes));
  }
  const uint32_t align_a = alignment(g.a, g.stride_a, g.ab_type), align_b = alignment(g.b, g.stride_b, g.ab_type);
  const uint32_t align_c = alignment(c, stride_c, g.cd_type), align_d = alignment(g.d, g.stride_d, g.cd_type);
  const Key key{g.trans_a, g.trans_b, g.m,        g.n,        g.k,   g.batch, g.lda,   g.stride_a,
                g.ldb,     g.stride_b, ldc,       stride_c,   g.ldd, g.stride_d, static_cast<int>(g.ab_type),
                static_cast<int>(g.cd_type), g.beta != 0.0f, align_a, align_b, align_c, align_d};
  auto it = s.plans.find(key);
  if (it == s.plans.end())
    it = s.plans.emplace(key, make_plan(s.handle, g, ldc, stride_c, align_a, align_b, align_c, align_d)).first;
  Plan& p = *it->second;
  CUBLAS_CHECK(cublasLtMatmul(s.handle, p.desc, &g.alpha, g.b, p.a, g.a, p.b, &g.beta, c, p.c, g.d, p.d, &p.algo,
                              s.workspace, p.workspace, stream()));
}

}  // namespace speedrun::cuda
