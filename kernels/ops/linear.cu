// The GEMM wrapper (linear.cuh) on the process's cuBLASLt context (kernels/runtime/cublaslt.cuh),
// and the linear op's forward and backward on it, with the bias kernels.
//
// Row-major to cuBLASLt's column-major: a row-major matrix X (r x c, ld) is the
// column-major X^T (c x r, ld). We want C = op(A) op(B); transposing, C^T = op(B)^T op(A)^T,
// so cuBLASLt computes D' (n x m, col-major, = C row-major) = op'(A') op'(B') with
//   A' = B, op' = trans_b;  B' = A, op' = trans_a;  M' = n, N' = m, K = k.
// The stored column-major shape of A' is (n x k) without transpose and (k x n) with it;
// of B', (k x m) without and (m x k) with. The bias epilogue adds a vector along M' = n,
// i.e. one value per column of the row-major C.
#include <cublasLt.h>

#include <stdexcept>
#include <string>

#include "kernels/ops/column_sums.cuh"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cublaslt.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/ops/linear.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

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


// The largest power of two (at most 256) dividing the address: cuBLASLt assumes 256-byte
// aligned matrices unless told otherwise, and row slices of activations are not.
uint32_t alignment(const void* p) { return lt_alignment(reinterpret_cast<uintptr_t>(p)); }

std::unique_ptr<LtPlan> make_plan(cublasLtHandle_t handle, const GemmArgs& g, bool bias, uint32_t align_a,
                                  uint32_t align_b, uint32_t align_c) {
  std::unique_ptr<LtPlan> plan = lt_new_plan(g.trans_a, g.trans_b);
  if (bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                sizeof(epilogue)));
    const int32_t bias_type = CUDA_R_32F;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                sizeof(bias_type)));
  }
  const cudaDataType_t ab = lt_data_type(g.ab_type, "gemm"), ct = lt_data_type(g.c_type, "gemm");
  // Stored column-major shapes (see the top of this file).
  const uint64_t a_rows = g.trans_b ? g.k : g.n, a_cols = g.trans_b ? g.n : g.k;
  const uint64_t b_rows = g.trans_a ? g.m : g.k, b_cols = g.trans_a ? g.k : g.m;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, ab, a_rows, a_cols, g.ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, ab, b_rows, b_cols, g.lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, ct, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.m),
                                          g.ldc));

  // A' is our B and B' our A; D is C.
  lt_choose_algorithm(handle, *plan, align_b, align_a, align_c, align_c, [&] {
    return "a " + std::to_string(g.m) + " x " + std::to_string(g.n) + " x " + std::to_string(g.k) + " " +
           dtype_name(g.ab_type) + " -> " + dtype_name(g.c_type) + " product";
  });
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
  const uint32_t align_a = alignment(g.a), align_b = alignment(g.b), align_c = alignment(g.c);
  const LtPlanKey key{.trans_a = g.trans_a, .trans_b = g.trans_b, .m = g.m, .n = g.n, .k = g.k, .lda = g.lda,
                      .ldb = g.ldb, .ldc = g.ldc, .ldd = g.ldc, .ab_type = static_cast<int>(g.ab_type),
                      .c_type = static_cast<int>(g.c_type), .bias_epilogue = g.bias != nullptr,
                      .beta_nonzero = g.beta != 0.0f, .align_a = align_a, .align_b = align_b, .align_c = align_c,
                      .align_d = align_c};
  lt_run(
      key,
      [&](cublasLtHandle_t handle) { return make_plan(handle, g, g.bias != nullptr, align_a, align_b, align_c); },
      [&](cublasLtHandle_t handle, LtPlan& p, void* workspace) {
        if (g.bias) {
          const void* bias = g.bias;
          CUBLAS_CHECK(
              cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
        }
        CUBLAS_CHECK(cublasLtMatmul(handle, p.desc, &g.alpha, g.b, p.a, g.a, p.b, &g.beta, g.c, p.c, g.c, p.c, &p.algo,
                                    workspace, p.workspace, stream()));
      });
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
