// See cublaslt.cuh.
#include <map>
#include <mutex>
#include <stdexcept>

#include "core/device_memory.h"
#include "kernels/runtime/cublaslt.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/runtime/workspace_sizes.h"

namespace speedrun::cuda {
namespace {

struct Context {
  std::mutex mutex;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::map<LtPlanKey, std::unique_ptr<LtPlan>> plans;
};
Context& context() {
  static Context c;  // never destroyed explicitly: lives until the process ends
  return c;
}

}  // namespace

LtPlan::~LtPlan() {
  if (a) cublasLtMatrixLayoutDestroy(a);
  if (b) cublasLtMatrixLayoutDestroy(b);
  if (c) cublasLtMatrixLayoutDestroy(c);
  if (d) cublasLtMatrixLayoutDestroy(d);
  if (desc) cublasLtMatmulDescDestroy(desc);
}

std::unique_ptr<LtPlan> lt_new_plan(bool trans_a, bool trans_b) {
  auto plan = std::make_unique<LtPlan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // A' = B
  const cublasOperation_t op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // B' = A
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  return plan;
}

cudaDataType_t lt_data_type(DType t, const char* who) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw std::invalid_argument(std::string(who) + ": unsupported dtype " + dtype_name(t));
  }
}

uint32_t lt_alignment(uint64_t bits) {
  uint32_t align = 256;
  while (align > 1 && (bits % align) != 0) align >>= 1;
  return align;
}

bool lt_find_algorithm(cublasLtHandle_t handle, LtPlan& plan, uint32_t align_a, uint32_t align_b, uint32_t align_c,
                       uint32_t align_d) {
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kGemmWorkspaceBytes;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  try {
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                                      sizeof(align_a)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                                      sizeof(align_b)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                                      sizeof(align_c)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d,
                                                      sizeof(align_d)));
    // An unsupported combination is reported as CUBLAS_STATUS_NOT_SUPPORTED (or as no
    // result): both mean "no algorithm", not an error of ours.
    status = cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.a, plan.b, plan.c, plan.d_layout(), pref, 1,
                                            &result, &found);
    if (status != CUBLAS_STATUS_SUCCESS && status != CUBLAS_STATUS_NOT_SUPPORTED) CUBLAS_CHECK(status);
  } catch (...) {
    cublasLtMatmulPreferenceDestroy(pref);
    throw;
  }
  CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  plan.has_algorithm = status == CUBLAS_STATUS_SUCCESS && found >= 1 && result.state == CUBLAS_STATUS_SUCCESS;
  if (plan.has_algorithm) {
    plan.algo = result.algo;
    plan.workspace = result.workspaceSize;
  }
  return plan.has_algorithm;
}

void lt_choose_algorithm(cublasLtHandle_t handle, LtPlan& plan, uint32_t align_a, uint32_t align_b, uint32_t align_c,
                         uint32_t align_d, const std::function<std::string()>& describe) {
  if (!lt_find_algorithm(handle, plan, align_a, align_b, align_c, align_d))
    throw std::runtime_error("cuBLASLt has no algorithm for " + describe());
}

void lt_run(const LtPlanKey& key, const std::function<std::unique_ptr<LtPlan>(cublasLtHandle_t)>& make,
            const std::function<void(cublasLtHandle_t, LtPlan&, void* workspace)>& run) {
  Context& c = context();
  std::lock_guard<std::mutex> lock(c.mutex);
  if (!c.handle) {
    CUBLAS_CHECK(cublasLtCreate(&c.handle));
    try {
      c.workspace = device_alloc(kGemmWorkspaceBytes);  // out of memory: a UserError with the sizes
    } catch (...) {
      cublasLtDestroy(c.handle);
      c.handle = nullptr;
      throw;
    }
  }
  auto it = c.plans.find(key);
  if (it == c.plans.end()) it = c.plans.emplace(key, make(c.handle)).first;
  run(c.handle, *it->second, c.workspace);
}

void lt_reset() {
  Context& c = context();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.plans.clear();
  if (c.handle) {
    CUDA_CHECK(cudaFree(c.workspace));
    CUBLAS_CHECK(cublasLtDestroy(c.handle));
    c.handle = nullptr;
    c.workspace = nullptr;
  }
}

}  // namespace speedrun::cuda
