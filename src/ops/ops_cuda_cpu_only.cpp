// The CUDA kernels' entry points (kernels/ops/ops_cuda.h) for binaries built without CUDA,
// so that the ops layer's dispatch (src/ops/<op>.cpp) is the same code in both builds.
// Nothing reaches them in such a binary: every op's CUDA branch starts with
// detail::cuda_prelude, which throws std::logic_error there first. Should one be reached
// anyway, it throws std::logic_error naming itself ("built without CUDA"). Compiled only
// when the CUDA backend is not (CMakeLists.txt drops *_cpu_only.cpp from CUDA builds).
#include <stdexcept>
#include <string>

#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

[[noreturn]] void no_cuda(const char* entry) {
  throw std::logic_error(std::string("cuda::") + entry + ": this binary was built without CUDA");
}

}  // namespace

void relu2_forward(DType, void*, const void*, int64_t) { no_cuda("relu2_forward"); }
void relu2_backward(DType, void*, const void*, const void*, int64_t) { no_cuda("relu2_backward"); }
void residual_forward(DType, void*, const void*, const void*, int64_t) { no_cuda("residual_forward"); }
void accumulate(DType, void*, const void*, int64_t) { no_cuda("accumulate"); }
RmsNormKernel rmsnorm_kernel() { no_cuda("rmsnorm_kernel"); }
RmsNormKernel set_rmsnorm_kernel(RmsNormKernel) { no_cuda("set_rmsnorm_kernel"); }
void residual_rmsnorm_forward(DType, void*, void*, float*, const void*, const void*, const float*, int64_t, int64_t,
                              float) {
  no_cuda("residual_rmsnorm_forward");
}
bool residual_rmsnorm_fuses(DType, int64_t, std::initializer_list<const void*>) {
  no_cuda("residual_rmsnorm_fuses");
}
NormFusion norm_fusion() { no_cuda("norm_fusion"); }
bool qk_norm_rotary_fuses(int64_t) { no_cuda("qk_norm_rotary_fuses"); }
void qk_norm_rotary_forward(DType, void*, float*, const void*, const float*, const float*, int64_t, int64_t, int64_t,
                            int64_t, float) {
  no_cuda("qk_norm_rotary_forward");
}
void qk_norm_rotary_backward(DType, void*, const void*, const void*, const float*, const float*, const float*,
                             int64_t, int64_t, int64_t, int64_t) {
  no_cuda("qk_norm_rotary_backward");
}
NormFusion set_norm_fusion(NormFusion) { no_cuda("set_norm_fusion"); }
void rmsnorm_forward(DType, void*, float*, const void*, const float*, int64_t, int64_t, float) {
  no_cuda("rmsnorm_forward");
}
void rmsnorm_backward(DType, void*, float*, const void*, const void*, const float*, const float*, int64_t, int64_t,
                      bool) {
  no_cuda("rmsnorm_backward");
}
void rotary_forward(DType, void*, const void*, const float*, const float*, int64_t, int64_t, int64_t, int64_t) {
  no_cuda("rotary_forward");
}
void rotary_backward(DType, void*, const void*, const float*, const float*, int64_t, int64_t, int64_t, int64_t) {
  no_cuda("rotary_backward");
}
void embedding_forward(DType, void*, const int32_t*, DType, const void*, int64_t, int64_t, int64_t) {
  no_cuda("embedding_forward");
}
void embedding_backward(float*, const int32_t*, DType, const void*, int64_t, int64_t, int64_t) {
  no_cuda("embedding_backward");
}
void softcap_forward(DType, void*, const void*, int64_t, const SoftCap&) { no_cuda("softcap_forward"); }
void softcap_cross_entropy(float*, DType, void*, const void*, const int32_t*, int64_t, int64_t, const SoftCap&,
                           float) {
  no_cuda("softcap_cross_entropy");
}
void add_sum_of_losses(double*, const float*, int64_t, bool) { no_cuda("add_sum_of_losses"); }
double read_f64(const double*) { no_cuda("read_f64"); }
void scaled_sum(DType, void*, float, const void*, float, const void*, int64_t) { no_cuda("scaled_sum"); }
double dot(DType, const void*, const void*, int64_t) { no_cuda("dot"); }
void attention_forward(DType, void*, float*, const void*, const void*, const void*, int64_t, int64_t, int64_t,
                       int64_t, float, const DocWindowMask*) {
  no_cuda("attention_forward");
}
void attention_backward(DType, void*, void*, void*, const void*, const void*, const void*, const void*, const void*,
                        const float*, int64_t, int64_t, int64_t, int64_t, float, const DocWindowMask*) {
  no_cuda("attention_backward");
}
HeadKernel head_kernel() { no_cuda("head_kernel"); }
HeadKernel set_head_kernel(HeadKernel) { no_cuda("set_head_kernel"); }
bool fused_cross_entropy_fits(int64_t) { no_cuda("fused_cross_entropy_fits"); }
Relu2Storage relu2_storage() { no_cuda("relu2_storage"); }
Relu2Storage set_relu2_storage(Relu2Storage) { no_cuda("set_relu2_storage"); }
void relu2_backward_recompute(DType, void*, void*, const void*, const void*, int64_t) {
  no_cuda("relu2_backward_recompute");
}
AttentionKernel attention_kernel() { no_cuda("attention_kernel"); }
AttentionKernel set_attention_kernel(AttentionKernel) { no_cuda("set_attention_kernel"); }
bool use_tensor_core_attention(DType, std::initializer_list<const void*>) { no_cuda("use_tensor_core_attention"); }
bool use_flash_attention(DType, std::initializer_list<const void*>) { no_cuda("use_flash_attention"); }
void attention_forward_tc(void*, float*, const void*, const void*, const void*, int64_t, int64_t, int64_t, int64_t,
                          float) {
  no_cuda("attention_forward_tc");
}
void attention_backward_tc(void*, void*, void*, const void*, const void*, const void*, const void*, const void*,
                           const float*, int64_t, int64_t, int64_t, int64_t, float) {
  no_cuda("attention_backward_tc");
}
void attention_forward_tc_masked(void*, float*, const void*, const void*, const void*, int64_t, int64_t, int64_t,
                                 int64_t, float, const DocWindowMask&) {
  no_cuda("attention_forward_tc_masked");
}
void attention_backward_tc_masked(void*, void*, void*, const void*, const void*, const void*, const void*,
                                  const void*, const float*, int64_t, int64_t, int64_t, int64_t, float,
                                  const DocWindowMask&) {
  no_cuda("attention_backward_tc_masked");
}
void linear_forward(DType, DType, void*, const void*, const void*, const void*, DType, int64_t, int64_t, int64_t) {
  no_cuda("linear_forward");
}
void linear_backward(DType, void*, float*, float*, const void*, const void*, const void*, int64_t, int64_t, int64_t,
                     bool) {
  no_cuda("linear_backward");
}
bool linear_forward_batched(DType, void*, int64_t, const void*, const void*, int64_t, const void*, DType, int64_t,
                            int64_t, int64_t, int64_t, int64_t) {
  no_cuda("linear_forward_batched");
}
bool linear_weight_grad_batched(DType, float*, int64_t, float*, int64_t, const void*, int64_t, const void*, int64_t,
                                int64_t, int64_t, int64_t) {
  no_cuda("linear_weight_grad_batched");
}
void bias_add(DType, void*, const void*, DType, int64_t, int64_t) { no_cuda("bias_add"); }
GemmEpilogue gemm_epilogue() { no_cuda("gemm_epilogue"); }
GemmEpilogue set_gemm_epilogue(GemmEpilogue) { no_cuda("set_gemm_epilogue"); }
void bias_grad(DType, float*, const void*, int64_t, int64_t) { no_cuda("bias_grad"); }
void convert(DType, void*, DType, const void*, int64_t) { no_cuda("convert"); }
void fill_nan(DType, void*, int64_t) { no_cuda("fill_nan"); }

void fp8_quantize(DType, void*, void*, DType, const void*, int64_t, int64_t, float, bool) { no_cuda("fp8_quantize"); }
void fp8_gemm_tn(DType, void*, DType, const void*, DType, const void*, int64_t, int64_t, int64_t, float, float, bool) {
  no_cuda("fp8_gemm_tn");
}
void round_to_bf16_values(float*, int64_t) { no_cuda("round_to_bf16_values"); }

}  // namespace speedrun::cuda
