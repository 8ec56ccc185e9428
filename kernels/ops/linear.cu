// The GEMM wrapper (linear.cuh) on the process's cuBLASLt context (kernels/runtime/cublaslt.cuh),
// and the linear op's forward and backward on it, with the bias kernels.
//
// Row-major to cuBLASLt's column-major: a row-major matrix X (r x c, ld) is the
// column-major X^T (c x r, ld). We want C = op(A) op(B); transposing, C^T = op(B)^T op(A)^T,
// so cuBLASLt computes D' (n x m, col-major, = C row-major) = op'(A') op'(B') with
//   A' = B, op' = trans_b;  B' = A, op' = trans_a;  M' = n, N' = m, K = k.
// The stored column-major shape of A' is (n x k) without transpose and (k x n) with it;
// of B', (k x m) without and (m x k) with. The bias epilogue adds a vector along M' = n,
// i.e. one value per column of the row-major C; the BGRADB epilogue reduces B' over K into
// a vector along N' = m, i.e. the row sums of our op(A).
//
// SPEEDRUN_GEMM_EPILOGUE (gemm_epilogue(), ops_cuda.h) chooses how a bf16 linear layer
// handles its bias: `separate` (the default) runs bias_add after the product and the
// column-sum kernel for the bias gradient; `fused` puts the bias into the product's
// epilogue (a bf16 bias: cuBLASLt's bias has D's type) and the bias gradient into the
// weight-gradient product (BGRADB). The fused path has NOT yet run on a GPU: it compiles,
// and CudaOpsTest.LinearEpiloguesMatchCpu / CudaModel.*Fused* check it when a GPU is lent.
#include <cublasLt.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/ops/column_sums.cuh"
#include "core/error.h"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cublaslt.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/ops/linear.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;  // the bias kernels: a grid-stride loop

template <class T, class B>
__global__ void bias_add_kernel(T* y, const B* b, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  GRID_STRIDE_LOOP(i, n) { y[i] = from_f32<T>(to_f32(y[i]) + to_f32(b[i % cols])); }
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
// For every matrix of a batch: the base address and the byte stride between matrices.
uint32_t alignment(const void* p, int64_t stride, DType t) {
  return lt_alignment(reinterpret_cast<uintptr_t>(p) | static_cast<uint64_t>(stride) * dtype_size(t));
}

// A matrix layout, with the batch attributes when there is more than one matrix.
cublasLtMatrixLayout_t make_layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld, int64_t batch,
                                   int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                  sizeof(stride)));
  }
  return layout;
}

std::unique_ptr<LtPlan> make_plan(cublasLtHandle_t handle, const GemmArgs& g, cublasLtEpilogue_t epilogue,
                                  uint32_t align_a, uint32_t align_b, uint32_t align_c) {
  std::unique_ptr<LtPlan> plan = lt_new_plan(g.trans_a, g.trans_b);
  if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                sizeof(epilogue)));
    // Both vectors have C's type (linear.cuh); said explicitly rather than left to the default.
    const int32_t vector_type = lt_data_type(g.c_type, "gemm");
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &vector_type,
                                                sizeof(vector_type)));
    // The heuristic reads the vector's pointer to learn its alignment (cublasLt.h,
    // CUBLASLT_MATMUL_DESC_BIAS_POINTER); the plan is keyed by that alignment, not the address.
    const void* vector = g.bias ? g.bias : static_cast<const void*>(g.bias_grad);
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &vector, sizeof(vector)));
    if (g.batch > 1) {
      const int64_t stride = g.stride_vector;
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &stride,
                                                  sizeof(stride)));
    }
  }
  const cudaDataType_t ab = lt_data_type(g.ab_type, "gemm"), ct = lt_data_type(g.c_type, "gemm");
  // Stored column-major shapes (see the top of this file).
  const uint64_t a_rows = g.trans_b ? g.k : g.n, a_cols = g.trans_b ? g.n : g.k;
  const uint64_t b_rows = g.trans_a ? g.m : g.k, b_cols = g.trans_a ? g.k : g.m;
  plan->a = make_layout(ab, a_rows, a_cols, g.ldb, g.batch, g.stride_b);
  plan->b = make_layout(ab, b_rows, b_cols, g.lda, g.batch, g.stride_a);
  plan->c = make_layout(ct, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.m), g.ldc, g.batch, g.stride_c);

  // A' is our B and B' our A; D is C. The bias gradient and the batch are optional (the
  // caller falls back to the column-sum kernel, or to one product at a time), so no
  // algorithm for them is an answer, not an error.
  if (epilogue == CUBLASLT_EPILOGUE_BGRADB || g.batch > 1) {
    lt_find_algorithm(handle, *plan, align_b, align_a, align_c, align_c);
    return plan;
  }
  lt_choose_algorithm(handle, *plan, align_b, align_a, align_c, align_c, [&] {
    return "a " + std::to_string(g.m) + " x " + std::to_string(g.n) + " x " + std::to_string(g.k) + " " +
           dtype_name(g.ab_type) + " -> " + dtype_name(g.c_type) + " product";
  });
  return plan;
}

GemmEpilogue kernel_from_environment() {
  const char* value = std::getenv("SPEEDRUN_GEMM_EPILOGUE");
  const std::string v = value ? value : "";
  if (v.empty() || v == "separate") return GemmEpilogue::separate;
  if (v == "fused") return GemmEpilogue::fused;
  throw UserError("SPEEDRUN_GEMM_EPILOGUE=" + v + ": expected fused, separate or nothing (environment variable)");
}

int epilogue_override = -1;  // -1: none; else a GemmEpilogue

}  // namespace

GemmEpilogue gemm_epilogue() {
  static const GemmEpilogue from_environment = kernel_from_environment();
  return epilogue_override < 0 ? from_environment : static_cast<GemmEpilogue>(epilogue_override);
}

GemmEpilogue set_gemm_epilogue(GemmEpilogue epilogue) {
  const GemmEpilogue previous = gemm_epilogue();
  epilogue_override = static_cast<int>(epilogue);
  return previous;
}

void bias_add(DType act, void* y, const void* b, DType bias_type, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  if (bias_type != DType::f32 && bias_type != act)
    throw std::invalid_argument(std::string("bias_add: a ") + dtype_name(bias_type) + " bias for " + dtype_name(act) +
                                " rows");
  with_act(act, "bias_add", [&]<class T>(std::type_identity<T>) {
    if (bias_type == DType::f32) {
      bias_add_kernel<T, float><<<grid_for(rows * cols, kThreads), kThreads, 0, stream()>>>(
          static_cast<T*>(y), static_cast<const float*>(b), rows, cols);
    } else {
      bias_add_kernel<T, T><<<grid_for(rows * cols, kThreads), kThreads, 0, stream()>>>(
          static_cast<T*>(y), static_cast<const T*>(b), rows, cols);
    }
    CUDA_CHECK_LAUNCH();
  });
}

void bias_grad(DType act, float* db, const void* dy, int64_t rows, int64_t cols) {
  with_act(act, "bias_grad", [&]<class T>(std::type_identity<T>) {
    add_column_sums(db, BiasGradValue<T>{static_cast<const T*>(dy), cols}, rows, cols);
  });
}

bool gemm(const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return true;
  if (g.bias && g.bias_type != g.c_type)
    throw std::invalid_argument(std::string("gemm: a ") + dtype_name(g.bias_type) + " bias for a " +
                                dtype_name(g.c_type) + " output (cuBLASLt's bias has the output's type)");
  if (g.bias && g.bias_grad) throw std::invalid_argument("gemm: a bias and a bias gradient in one product");
  if (g.bias_grad && g.c_type != DType::f32)
    throw std::invalid_argument("gemm: the bias gradient epilogue needs an f32 output (our gradients are f32)");
  if (g.k <= 0) {
    throw std::invalid_argument("gemm: k = 0");  // callers never need C = beta C; say so rather than guess
  }
  const cublasLtEpilogue_t epilogue = g.bias        ? CUBLASLT_EPILOGUE_BIAS
                                      : g.bias_grad ? CUBLASLT_EPILOGUE_BGRADB
                                                    : CUBLASLT_EPILOGUE_DEFAULT;
  const bool batched = g.batch > 1;
  const uint32_t align_a = alignment(g.a, batched ? g.stride_a : 0, g.ab_type);
  const uint32_t align_b = alignment(g.b, batched ? g.stride_b : 0, g.ab_type);
  const uint32_t align_c = alignment(g.c, batched ? g.stride_c : 0, g.c_type);
  // The vector's alignment is part of the key: the heuristic saw the first call's pointer.
  const uint32_t align_v = alignment(g.bias ? g.bias : static_cast<const void*>(g.bias_grad),
                                     batched ? g.stride_vector : 0, g.c_type);
  const LtPlanKey key{.batched = batched, .trans_a = g.trans_a, .trans_b = g.trans_b, .m = g.m, .n = g.n, .k = g.k,
                      .batch = g.batch, .lda = g.lda, .stride_a = batched ? g.stride_a : 0, .ldb = g.ldb,
                      .stride_b = batched ? g.stride_b : 0, .ldc = g.ldc, .stride_c = batched ? g.stride_c : 0,
                      .ldd = g.ldc, .stride_d = batched ? g.stride_c : 0, .ab_type = static_cast<int>(g.ab_type),
                      .c_type = static_cast<int>(g.c_type), .epilogue = static_cast<uint32_t>(epilogue),
                      .bias_type = epilogue == CUBLASLT_EPILOGUE_DEFAULT ? -1 : static_cast<int>(g.c_type),
                      .beta_nonzero = g.beta != 0.0f, .align_a = align_a, .align_b = align_b, .align_c = align_c,
                      .align_d = align_c, .align_vector = epilogue == CUBLASLT_EPILOGUE_DEFAULT ? 0 : align_v,
                      .stride_vector = epilogue != CUBLASLT_EPILOGUE_DEFAULT && batched ? g.stride_vector : 0};
  bool ran = false;
  lt_run(
      key,
      [&](cublasLtHandle_t handle) { return make_plan(handle, g, epilogue, align_a, align_b, align_c); },
      [&](cublasLtHandle_t handle, LtPlan& p, void* workspace) {
        if (!p.has_algorithm) return;
        if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
          const void* vector = g.bias ? g.bias : static_cast<const void*>(g.bias_grad);
          CUBLAS_CHECK(
              cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &vector, sizeof(vector)));
        }
        CUBLAS_CHECK(cublasLtMatmul(handle, p.desc, &g.alpha, g.b, p.a, g.a, p.b, &g.beta, g.c, p.c, g.c, p.c, &p.algo,
                                    workspace, p.workspace, stream()));
        ran = true;
      });
  return ran;
}

// y = x W^T (+ b). The bias rides cuBLASLt's epilogue when its type is the output's
// (linear.cuh), it is 16-byte aligned (the plan is made for aligned vectors; parameter
// views inside the flat buffer need not be), and either the output is f32 (y = fl(x W^T + b)
// in fp32, as the CPU's fl(fl(x W^T) + b) up to the epilogue's own rounding: the LM head and
// f32 runs, always so) or SPEEDRUN_GEMM_EPILOGUE=fused (a bf16 output with the model's bf16
// bias copy: one rounding of x W^T + b, the bias itself rounded to bf16 as upstream's
// autocast rounds it). Otherwise bias_add adds it after the product: the bf16 output is then
// rounded twice (product, then sum).
void linear_forward(DType act, DType out_type, void* y, const void* x, const void* w, const void* b,
                    DType bias_type, int64_t rows, int64_t in, int64_t out) {
  if (rows <= 0) return;
  if (out_type != act && !(act == DType::bf16 && out_type == DType::f32))
    throw std::invalid_argument(std::string("linear_forward: ") + dtype_name(act) + " inputs cannot give a " +
                                dtype_name(out_type) + " output");
  if (b && bias_type != DType::f32 && bias_type != out_type)
    throw std::invalid_argument(std::string("linear_forward: a ") + dtype_name(bias_type) + " bias for a " +
                                dtype_name(out_type) + " output");
  GemmArgs g{.trans_b = true, .m = rows, .n = out, .k = in, .a = x, .lda = in, .b = w, .ldb = in, .c = y,
             .ldc = out, .ab_type = act, .c_type = out_type};
  const bool epilogue = b && bias_type == out_type && alignment(b) >= 16 &&
                        (out_type == DType::f32 || gemm_epilogue() == GemmEpilogue::fused);
  if (epilogue) {
    g.bias = b;
    g.bias_type = bias_type;
  }
  gemm(g);
  if (b && !epilogue) bias_add(out_type, y, b, bias_type, rows, out);
}

// dx = (or +=) dy W (type act); dw += dy^T x (f32, beta = 1: micro-batches add up);
// db += column sums of dy: with SPEEDRUN_GEMM_EPILOGUE=fused and dw wanted, by the weight
// gradient's BGRADB epilogue into an (out) f32 scratch that is then added to db (cuBLASLt
// writes the vector, our gradients accumulate); else, or when cuBLASLt has no BGRADB
// algorithm for the product, by the deterministic column-sum kernel.
void linear_backward(DType act, void* dx, float* dw, float* db, const void* dy, const void* x, const void* w,
                     int64_t rows, int64_t in, int64_t out, bool accumulate_dx) {
  if (rows <= 0) return;
  if (dx)
    gemm({.m = rows, .n = in, .k = out, .a = dy, .lda = out, .b = w, .ldb = in, .c = dx, .ldc = in, .ab_type = act,
          .c_type = act, .beta = accumulate_dx ? 1.0f : 0.0f});
  if (dw) {
    GemmArgs g{.trans_a = true, .m = out, .n = in, .k = rows, .a = dy, .lda = out, .b = x, .ldb = in, .c = dw,
               .ldc = in, .ab_type = act, .c_type = DType::f32, .beta = 1.0f};
    if (db && gemm_epilogue() == GemmEpilogue::fused) {
      float* scratch = static_cast<float*>(workspace(static_cast<size_t>(out) * sizeof(float)));
      g.bias_grad = scratch;
      if (gemm(g)) {
        accumulate(DType::f32, db, scratch, out);
        return;
      }
      g.bias_grad = nullptr;
    }
    gemm(g);
  }
  if (db) bias_grad(act, db, dy, rows, out);
}

// `batch` layers reading one x (q, k and v), as one strided-batched product: weight i at
// w + i w_stride, bias i at b + i b_stride, output i at y + i y_stride (elements). The bias
// must take the epilogue (its type the output's, 16-byte aligned base and stride), else the
// layers run one by one (false). Not yet run on a GPU.
bool linear_forward_batched(DType act, void* y, int64_t y_stride, const void* x, const void* w, int64_t w_stride,
                            const void* b, DType bias_type, int64_t b_stride, int64_t batch, int64_t rows, int64_t in,
                            int64_t out) {
  if (rows <= 0 || batch <= 0) return true;
  if (b && (bias_type != act || alignment(b, b_stride, bias_type) < 16)) return false;
  GemmArgs g{.trans_b = true, .m = rows, .n = out, .k = in, .a = x, .lda = in, .b = w, .ldb = in, .c = y,
             .ldc = out, .ab_type = act, .c_type = act, .bias = b, .bias_type = bias_type, .batch = batch,
             .stride_a = 0, .stride_b = w_stride, .stride_c = y_stride, .stride_vector = b_stride};
  return gemm(g);
}

// dw_i += dy_i^T x (f32, beta = 1) as one strided-batched product, and db_i += the column
// sums of dy_i: by the product's BGRADB epilogue into a (batch x out) f32 scratch, then one
// add per layer; by the column-sum kernel where cuBLASLt has no batched BGRADB algorithm.
// False (nothing done) when it has no batched algorithm at all. Not yet run on a GPU.
bool linear_weight_grad_batched(DType act, float* dw, int64_t dw_stride, float* db, int64_t db_stride,
                                const void* dy, int64_t dy_stride, const void* x, int64_t batch, int64_t rows,
                                int64_t in, int64_t out) {
  if (rows <= 0 || batch <= 0) return true;
  GemmArgs g{.trans_a = true, .m = out, .n = in, .k = rows, .a = dy, .lda = out, .b = x, .ldb = in, .c = dw,
             .ldc = in, .ab_type = act, .c_type = DType::f32, .beta = 1.0f, .batch = batch,
             .stride_a = dy_stride, .stride_b = 0, .stride_c = dw_stride};
  if (db) {
    float* scratch = static_cast<float*>(workspace(static_cast<size_t>(batch * out) * sizeof(float)));
    g.bias_grad = scratch;
    g.stride_vector = out;
    if (gemm(g)) {
      for (int64_t i = 0; i < batch; ++i) accumulate(DType::f32, db + i * db_stride, scratch + i * out, out);
      return true;
    }
    g.bias_grad = nullptr;
    g.stride_vector = 0;
  }
  if (!gemm(g)) return false;
  if (db) {
    with_act(act, "linear_weight_grad_batched", [&]<class T>(std::type_identity<T>) {
      for (int64_t i = 0; i < batch; ++i)
        add_column_sums(db + i * db_stride, BiasGradValue<T>{static_cast<const T*>(dy) + i * dy_stride, out}, rows,
                        out);
    });
  }
  return true;
}

}  // namespace speedrun::cuda
