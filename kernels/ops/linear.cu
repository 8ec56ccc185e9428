// cuBLASLt wrapper (see gemm.cuh) and the linear layer's forward and backward on it.
//
// Row-major to cuBLASLt's column-major: a row-major matrix X (r x c, ld) is the
// column-major X^T (c x r, ld). We want C = op(A) op(B); transposing, C^T = op(B)^T op(A)^T,
// so cuBLASLt computes D' (n x m, col-major, = C row-major) = op'(A') op'(B') with
//   A' = B, op' = trans_b;  B' = A, op' = trans_a;  M' = n, N' = m, K = k.
// The stored column-major shape of A' is (n x k) without transpose and (k x n) with it;
// of B', (k x m) without and (m x k) with. The bias epilogue adds a vector along M' = n,
// i.e. one value per column of the row-major C.
#include <cublasLt.h>

#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include "core/device_memory.h"
#include "kernels/ops/column_sums.cuh"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/ops/linear.cuh"
#include "kernels/ops/ops_cuda.h"
#include "kernels/runtime/workspace_sizes.h"

namespace speedrun::cuda {
namespace {

constexpr size_t kWorkspaceBytes = kGemmWorkspaceBytes;

constexpr int kThreads = 256;  // the bias kernels: a grid-stride loop

template <class T>
__global__ void bias_add_kernel(T* y, const float* b, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  GRID_STRIDE_LOOP(i, n) { y[i] = from_f32<T>(to_f32(y[i]) + b[i % cols]); }
}

// value(r, c) = dy[r, c] for the bias gradient.
template <class T>
struct BiasGradValue {
  const T* dy;
  int64_t cols;
  __device__ float operator()(int64_t r, int64_t c) const { return to_f32(dy[r * cols + c]); }
};


cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw std::invalid_argument(std::string("gemm: unsupported dtype ") + dtype_name(t));
  }
}

// The largest power of two (at most 256) dividing the address: cuBLASLt assumes 256-byte
// aligned matrices unless told otherwise, and row slices of activations are not.
uint32_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && (a % align) != 0) align >>= 1;
  return align;
}

using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, bool, bool,
                       uint32_t, uint32_t, uint32_t>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  ~Plan() {  // errors ignored: this may run at exit, after the driver has gone
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
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
  static State s;
  return s;
}

std::unique_ptr<Plan> make_plan(cublasLtHandle_t handle, const GemmArgs& g, bool bias, uint32_t align_a,
                                uint32_t align_b, uint32_t align_c) {
  auto plan = std::make_unique<Plan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // A' = B
  const cublasOperation_t op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // B' = A
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                sizeof(epilogue)));
    const int32_t bias_type = CUDA_R_32F;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                sizeof(bias_type)));
  }
  const cudaDataType_t ab = cuda_type(g.ab_type), ct = cuda_type(g.c_type);
  // Stored column-major shapes (see the top of this file).
  const uint64_t a_rows = g.trans_b ? g.k : g.n, a_cols = g.trans_b ? g.n : g.k;
  const uint64_t b_rows = g.trans_a ? g.m : g.k, b_cols = g.trans_a ? g.k : g.m;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, ab, a_rows, a_cols, g.ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, ab, b_rows, b_cols, g.lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, ct, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.m),
                                          g.ldc));

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  try {
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    // A' is our B and B' our A.
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_b,
                                                      sizeof(align_b)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_a,
                                                      sizeof(align_a)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                                      sizeof(align_c)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c,
                                                      sizeof(align_c)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1,
                                                &result, &found));
    if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS) {
      throw std::runtime_error("cuBLASLt has no algorithm for a " + std::to_string(g.m) + " x " + std::to_string(g.n) +
                               " x " + std::to_string(g.k) + " " + dtype_name(g.ab_type) + " -> " +
                               dtype_name(g.c_type) + " product");
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

void bias_add(DType act, void* y, const float* b, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  with_act(act, "bias_add", [&]<class T>(std::type_identity<T>) {
    bias_add_kernel<T><<<grid_for(rows * cols, kThreads), kThreads, 0, stream()>>>(static_cast<T*>(y), b, rows, cols);
    CUDA_CHECK_LAUNCH();
  });
}

void bias_grad(DType act, float* db, const void* dy, int64_t rows, int64_t cols) {
  with_act(act, "bias_grad", [&]<class T>(std::type_identity<T>) {
    add_column_sums(db, BiasGradValue<T>{static_cast<const T*>(dy), cols}, rows, cols);
  });
}

void gemm(const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.bias && g.c_type != DType::f32) throw std::invalid_argument("gemm: the bias epilogue needs an f32 output");
  if (g.k <= 0) {
    throw std::invalid_argument("gemm: k = 0");  // callers never need C = beta C; say so rather than guess
  }
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.handle) {
    CUBLAS_CHECK(cublasLtCreate(&s.handle));
    s.workspace = device_alloc(kWorkspaceBytes);  // out of memory: a UserError with the sizes
  }
  const uint32_t align_a = alignment(g.a), align_b = alignment(g.b), align_c = alignment(g.c);
  const Key key{g.trans_a, g.trans_b, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, static_cast<int>(g.ab_type),
                static_cast<int>(g.c_type), g.bias != nullptr, g.beta != 0.0f, align_a, align_b, align_c};
  auto it = s.plans.find(key);
  if (it == s.plans.end()) {
    it = s.plans.emplace(key, make_plan(s.handle, g, g.bias != nullptr, align_a, align_b, align_c)).first;
  }
  Plan& p = *it->second;
  if (g.bias) {
    const void* bias = g.bias;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  CUBLAS_CHECK(cublasLtMatmul(s.handle, p.desc, &g.alpha, g.b, p.a, g.a, p.b, &g.beta, g.c, p.c, g.c, p.c, &p.algo,
                              s.workspace, p.workspace, stream()));
}

void gemm_reset() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.plans.clear();
  if (s.handle) {
    CUDA_CHECK(cudaFree(s.workspace));
    CUBLAS_CHECK(cublasLtDestroy(s.handle));
    s.handle = nullptr;
    s.workspace = nullptr;
  }
}

// y = x W^T (+ b). f32: the bias rides the epilogue (y = fl(x W^T + b) in fp32, as the
// CPU's fl(fl(x W^T) + b) up to the epilogue's own rounding) when it is 16-byte aligned.
// bf16 output: cuBLASLt wants a bf16 bias for a bf16 output, so the f32 bias is added by a
// separate kernel after the product (as is an unaligned f32 bias). bf16 inputs with an f32
// output (the LM head) take the epilogue like f32.
void linear_forward(DType act, DType out_type, void* y, const void* x, const void* w, const float* b, int64_t rows,
                    int64_t in, int64_t out) {
  if (rows <= 0) return;
  if (out_type != act && !(act == DType::bf16 && out_type == DType::f32))
    throw std::invalid_argument(std::string("linear_forward: ") + dtype_name(act) + " inputs cannot give a " +
                                dtype_name(out_type) + " output");
  GemmArgs g{.trans_b = true, .m = rows, .n = out, .k = in, .a = x, .lda = in, .b = w, .ldb = in, .c = y,
             .ldc = out, .ab_type = act, .c_type = out_type};
  // The epilogue only for a 16-byte aligned bias: the heuristic is not told the bias
  // pointer's alignment, and parameter views inside the flat buffer need not be aligned.
  const bool epilogue = b && out_type == DType::f32 && alignment(b) >= 16;
  g.bias = epilogue ? b : nullptr;
  gemm(g);
  if (b && !epilogue) bias_add(out_type, y, b, rows, out);
}

// dx = (or +=) dy W (type act); dw += dy^T x (f32, beta = 1: micro-batches add up);
// db += column sums of dy (deterministic kernel).
void linear_backward(DType act, void* dx, float* dw, float* db, const void* dy, const void* x, const void* w,
                     int64_t rows, int64_t in, int64_t out, bool accumulate_dx) {
  if (rows <= 0) return;
  if (dx)
    gemm({.m = rows, .n = in, .k = out, .a = dy, .lda = out, .b = w, .ldb = in, .c = dx, .ldc = in, .ab_type = act,
          .c_type = act, .beta = accumulate_dx ? 1.0f : 0.0f});
  if (dw)
    gemm({.trans_a = true, .m = out, .n = in, .k = rows, .a = dy, .lda = out, .b = x, .ldb = in, .c = dw, .ldc = in,
          .ab_type = act, .c_type = DType::f32, .beta = 1.0f});
  if (db) bias_grad(act, db, dy, rows, out);
}

}  // namespace speedrun::cuda
