// Record #26's FP8 head on CUDA (ops.h fp8_head_forward/backward; upstream's nanogpt::mm and
// nanogpt::mm_backward, KellerJordan/modded-nanogpt train_gpt.py at commit 345b2fb, lines 26-103):
// the quantization kernels and the FP8 products through cuBLASLt. NEVER RUN ON A GPU YET: it
// compiles for sm_90 and its tests (tests/unit/test_cuda_fp8_head.cpp, CudaOpsTest.Fp8Head*)
// wait for a lent device; nothing here is verified until they pass there.
//
// cuBLASLt facts this file relies on (cuBLAS documentation, cublasLtMatmul, "FP8" requirements,
// and cublasLt.h of CUDA 13.0):
// - Hopper's FP8 kernels need the "TN" format: cuBLASLt's A transposed and B not, i.e. both
//   operands stored K-major (NVIDIA forum thread "Why is TN format required for FP8 in
//   cublasLtMatmul", 292575; NVIDIA TransformerEngine's cublaslt_gemm.cu: "Hopper only supports
//   TN GEMMs for FP8"; Blackwell lifts it). In row-major terms every product here is
//   y = a b^T with a (m, k) and b (n, k) both K-contiguous; the backward reads the transposed
//   copies the quantization kernels write (upstream builds the same with w_f8.T.contiguous().T
//   and x_f8.T.contiguous()).
// - Operand types: e4m3 x e4m3, e4m3 x e5m2 or e5m2 x e4m3 (not e5m2 x e5m2); compute type
//   CUBLAS_COMPUTE_32F with scale type CUDA_R_32F; the output D may be f32, bf16, f16 or an
//   FP8 type, C must be f32 with an f32 D and bf16 with a bf16 D.
// - Alignment: A and B 16-byte aligned with leading dimensions multiples of 16 bytes, i.e. 16
//   FP8 elements (PyTorch's _scaled_mm asserts the same: both of mat2's dimensions and mat1's
//   trailing one divisible by 16, pytorch#108308). ops::fp8_head_* check the dimensions first.
// - Scales: D = scale_D (alpha scale_A scale_B op(A) op(B) + beta scale_C C), the scales passed
//   as device pointers (CUBLASLT_MATMUL_DESC_A/B/D_SCALE_POINTER, f32, default 1). Upstream's
//   _scaled_mm passes scale_a and scale_b that way; here they are folded into the host alpha
//   (alpha = f32(s_a) f32(s_b), the factor the CPU emulation multiplies by, src/ops/fp8.cpp), so
//   no device scalar has to outlive the asynchronous call; the scale pointers stay unset (1).
// - CUBLASLT_MATMUL_DESC_FAST_ACCUM (int8, default 0): "intermediate results will not
//   periodically be promoted to a higher precision". Upstream sets use_fast_accum=True in the
//   forward and False in both backward products; so does this file.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cublasLt.h>

#include <stdexcept>
#include <string>

#include "kernels/ops/ops_cuda.h"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cublaslt.cuh"
#include "kernels/runtime/cuda_check.cuh"

namespace speedrun::cuda {
namespace {

constexpr int kTile = 32;     // the transposing kernel's tile: 32 x 32 elements
constexpr int kTileRows = 8;  // threads per block: 32 x 8, each thread 4 rows of the tile

__device__ __forceinline__ float load_value(const float* x, int64_t i) { return x[i]; }
__device__ __forceinline__ float load_value(const bf16* x, int64_t i) { return __bfloat162float(x[i]); }

// fp8(x / scale): the IEEE quotient (__fdiv_rn, whatever the compile flags), one conversion
// with round to nearest even and .satfinite (cvt.rn.satfinite.{e4m3,e5m2}x2.f32).
template <__nv_fp8_interpretation_t Kind>
__device__ __forceinline__ __nv_fp8_storage_t quantize(float v, float scale, bool round_bf16_first) {
  if (round_bf16_first) v = __bfloat162float(__float2bfloat16_rn(v));
  return __nv_cvt_float_to_fp8(__fdiv_rn(v, scale), __NV_SATFINITE, Kind);
}

// One 32 x 32 tile of x per block: q written row by row (coalesced along cols), qt through a
// shared tile (coalesced along rows). The +1 column of padding is the usual bank-conflict
// guard; with byte elements it is harmless.
template <class T, __nv_fp8_interpretation_t Kind>
__global__ void quantize_kernel(__nv_fp8_storage_t* q, __nv_fp8_storage_t* qt, const T* x, int64_t rows,
                                int64_t cols, float scale, bool round_bf16_first) {
  __shared__ __nv_fp8_storage_t tile[kTile][kTile + 1];
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kTile, c0 = static_cast<int64_t>(blockIdx.x) * kTile;
  for (int i = threadIdx.y; i < kTile; i += kTileRows) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) {
      const __nv_fp8_storage_t v = quantize<Kind>(load_value(x, r * cols + c), scale, round_bf16_first);
      q[r * cols + c] = v;
      tile[i][threadIdx.x] = v;
    }
  }
  if (!qt) return;  // uniform over the block: no thread is left waiting at the barrier
  __syncthreads();
  for (int i = threadIdx.y; i < kTile; i += kTileRows) {
    const int64_t c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) qt[c * rows + r] = tile[threadIdx.x][i];
  }
}

__global__ void round_bf16_kernel(float* y, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { y[i] = __bfloat162float(__float2bfloat16_rn(y[i])); }
}

cudaDataType_t fp8_type(DType t) {
  if (t == DType::e4m3) return CUDA_R_8F_E4M3;
  if (t == DType::e5m2) return CUDA_R_8F_E5M2;
  throw std::invalid_argument(std::string("fp8_gemm_tn: operand dtype ") + dtype_name(t) + " is not e4m3 or e5m2");
}

uint32_t alignment(const void* p) { return lt_alignment(reinterpret_cast<uintptr_t>(p)); }

}  // namespace

void fp8_quantize(DType kind, void* q, void* qt, DType in, const void* x, int64_t rows, int64_t cols, float scale,
                  bool round_bf16_first) {
  if (rows <= 0 || cols <= 0) return;
  if (kind != DType::e4m3 && kind != DType::e5m2)
    throw std::invalid_argument(std::string("fp8_quantize: output dtype ") + dtype_name(kind));
  const dim3 block(kTile, kTileRows);
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kTile)), static_cast<unsigned>(ceil_div(rows, kTile)));
  if (grid.y > 65535u) throw std::invalid_argument("fp8_quantize: more than 65535 * 32 rows");
  auto* qp = static_cast<__nv_fp8_storage_t*>(q);
  auto* qtp = static_cast<__nv_fp8_storage_t*>(qt);
  with_act(in, "fp8_quantize", [&]<class T>(std::type_identity<T>) {
    const T* xp = static_cast<const T*>(x);
    if (kind == DType::e4m3)
      quantize_kernel<T, __NV_E4M3><<<grid, block, 0, stream()>>>(qp, qtp, xp, rows, cols, scale, round_bf16_first);
    else
      quantize_kernel<T, __NV_E5M2><<<grid, block, 0, stream()>>>(qp, qtp, xp, rows, cols, scale, round_bf16_first);
    CUDA_CHECK_LAUNCH();
  });
}

void round_to_bf16_values(float* y, int64_t n) {
  if (n <= 0) return;
  round_bf16_kernel<<<grid_for(n, 256), 256, 0, stream()>>>(y, n);
  CUDA_CHECK_LAUNCH();
}

void fp8_gemm_tn(DType out_type, void* y, DType a_type, const void* a, DType b_type, const void* b, int64_t m,
                 int64_t n, int64_t k, float alpha, float beta, bool fast_accum) {
  if (m <= 0 || n <= 0) return;
  const cudaDataType_t at = fp8_type(a_type), bt = fp8_type(b_type);
  if (a_type == DType::e5m2 && b_type == DType::e5m2)
    throw std::invalid_argument("fp8_gemm_tn: cuBLASLt has no e5m2 x e5m2 product");
  if (out_type != DType::f32 && out_type != DType::bf16)
    throw std::invalid_argument(std::string("fp8_gemm_tn: output dtype ") + dtype_name(out_type));
  if (m % 16 != 0 || n % 16 != 0 || k % 16 != 0)
    throw std::invalid_argument("fp8_gemm_tn: FP8 products need m, n, k multiples of 16, got " + std::to_string(m) +
                                " x " + std::to_string(n) + " x " + std::to_string(k));
  const uint32_t align_a = alignment(a), align_b = alignment(b), align_y = alignment(y);
  if (align_a < 16 || align_b < 16) throw std::invalid_argument("fp8_gemm_tn: operands must be 16-byte aligned");
  const cudaDataType_t yt = lt_data_type(out_type, "fp8_gemm_tn");
  const LtPlanKey key{.trans_b = true, .m = m, .n = n, .k = k, .lda = k, .ldb = k, .ldc = n, .ldd = n,
                      .c_type = static_cast<int>(out_type), .beta_nonzero = beta != 0.0f, .align_a = align_a,
                      .align_b = align_b, .align_c = align_y, .align_d = align_y,
                      .fp8_a_type = static_cast<int>(a_type), .fp8_b_type = static_cast<int>(b_type),
                      .fast_accum = fast_accum};
  lt_run(
      key,
      [&](cublasLtHandle_t handle) {
        // Row-major y (m x n) = a b^T is column-major y^T (n x m) = b a^T: cuBLASLt's A' is our b
        // (stored k x n column-major, op T) and B' our a (k x m column-major, op N): "TN".
        std::unique_ptr<LtPlan> plan = lt_new_plan(/*trans_a=*/false, /*trans_b=*/true);
        const int8_t fast = fast_accum ? 1 : 0;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, bt, static_cast<uint64_t>(k), static_cast<uint64_t>(n), k));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, at, static_cast<uint64_t>(k), static_cast<uint64_t>(m), k));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, yt, static_cast<uint64_t>(n), static_cast<uint64_t>(m), n));
        lt_choose_algorithm(handle, *plan, align_b, align_a, align_y, align_y, [&] {
          return "an FP8 " + std::to_string(m) + " x " + std::to_string(n) + " x " + std::to_string(k) + " " +
                 dtype_name(a_type) + " x " + dtype_name(b_type) + " -> " + dtype_name(out_type) + " product";
        });
        return plan;
      },
      [&](cublasLtHandle_t handle, LtPlan& p, void* workspace) {
        CUBLAS_CHECK(cublasLtMatmul(handle, p.desc, &alpha, b, p.a, a, p.b, &beta, y, p.c, y, p.c, &p.algo, workspace,
                                    p.workspace, stream()));
      });
}

}  // namespace speedrun::cuda
