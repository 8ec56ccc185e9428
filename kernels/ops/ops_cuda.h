// Host entry points of the CUDA kernels, called by the ops layer (src/ops/<op>.cpp) for
// tensors on Device::cuda. Plain C++: no CUDA header is included, so the ops layer includes
// it in every build; a CPU-only build defines them in src/ops/ops_cuda_cpu_only.cpp as
// functions that throw std::logic_error ("built without CUDA"), out of reach of any op.
//
// Types. `act` is the storage type of activations: DType::f32 or DType::bf16. Everything
// else is fp32 whatever `act` is: RMSNorm gains and rstd, biases, the attention lse, the
// rotary tables, per-row losses and every parameter gradient (dgains, db, dw, dtable).
// Arithmetic is fp32 throughout (bf16 values are widened on load, rounded to nearest on
// store). Pointers are device pointers; every launch goes to cuda::stream() and is
// checked; nothing here synchronizes the device.
//
// Aliasing and accumulation follow ops.h exactly.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <string>

#include "core/tensor.h"
#include "core/softcap.h"
#include "kernels/ops/attention_mask.h"

namespace speedrun::cuda {

// --- activation: ReLU^2 and the residual add (kernels/ops/activation.cu) ------------------
void relu2_forward(DType act, void* out, const void* x, int64_t n);
void relu2_backward(DType act, void* dx, const void* dout, const void* x, int64_t n);
// g = relu(x)^2 and dx = dout * 2 relu(x) (as the two calls above) in one pass; g may alias
// x, dx may alias dout.
void relu2_backward_recompute(DType act, void* dx, void* g, const void* dout, const void* x, int64_t n);
// What the model stores for ReLU^2 (src/model/gpt.cpp, on CUDA). `legacy`: per layer both
// the pre-activation f and g = relu(f)^2 (mlp.proj's input, read again by its weight
// gradient). `recompute`: f only; the forward writes g into the backward's dfg scratch (free
// during the forward) and the backward rebuilds g over f with relu2_backward_recompute (f is
// dead after it): one (tokens x 4d) activation per layer less. The environment variable
// SPEEDRUN_RELU2=recompute|legacy (read once, at the first call) chooses; unset means legacy
// until recompute has passed on a GPU; another value is refused (UserError, naming the
// variable: exit status 1). A model reads the choice when it is built.
enum class Relu2Storage { legacy, recompute };
Relu2Storage relu2_storage();
// Overrides the environment's choice (tests compare both); returns the previous relu2_storage().
Relu2Storage set_relu2_storage(Relu2Storage storage);
void residual_forward(DType act, void* out, const void* a, const void* b, int64_t n);
// dst += src
void accumulate(DType act, void* dst, const void* src, int64_t n);

// --- scaled sums and dot products (kernels/ops/scale.cu) ----------------------------------------
// out = alpha x + beta y (y null: out = alpha x), n elements of type `act`; out may alias x or y.
void scaled_sum(DType act, void* out, float alpha, const void* x, float beta, const void* y, int64_t n);
// sum_i x[i] y[i] accumulated in fp64 in a fixed order (the same bits on every run and
// device). Returns to the host: synchronizes cuda::stream().
double dot(DType act, const void* x, const void* y, int64_t n);

// --- rmsnorm, QK-norm included (kernels/ops/rmsnorm.cu) --------------------------------------------
// gains may be null. rstd (rows) f32.
void rmsnorm_forward(DType act, void* out, float* rstd, const void* x, const float* gains, int64_t rows,
                     int64_t channels, float eps);
// dx may be null; dgains may be null (else += , deterministic).
void rmsnorm_backward(DType act, void* dx, float* dgains, const void* dout, const void* x, const float* gains,
                      const float* rstd, int64_t rows, int64_t channels, bool accumulate_dx);

// Which RMSNorm kernels the two calls above use. `legacy`: one warp per row, two passes over
// the row, and the gains gradient as a separate column-sum pass. `fast`: one pass each, 16-byte
// vector loads, a persistent grid, the gains gradient reduced in the same pass through a
// (grid x C) f32 scratch (kernels/ops/rmsnorm.cu); used where C is a multiple of 16 / sizeof(act)
// up to 1024 and x, out, dout, dx are 16-byte aligned, else the legacy kernels run.
// The environment variable SPEEDRUN_RMSNORM=fast|legacy (read once, at the first call)
// chooses; unset means legacy until the fast kernels have passed on a GPU; another value is
// refused (UserError, naming the variable: exit status 1).
enum class RmsNormKernel { legacy, fast };
RmsNormKernel rmsnorm_kernel();
// Overrides the environment's choice (tests and dev/cuda/rmsnorm.cu compare both); returns
// the previous rmsnorm_kernel(). Not synchronized with RMSNorm calls on other threads.
RmsNormKernel set_rmsnorm_kernel(RmsNormKernel kernel);

// The residual add fused into the next RMSNorm's forward (ops::residual_rmsnorm_forward):
// sum = a + b (rounded to `act`, the residual stream kept for the backward), then out =
// (sum r) g and rstd = r over the ROUNDED sum, as residual_forward then rmsnorm_forward
// give. a, b, sum, out (rows, channels) of type `act`; gains (channels) f32 or null; rstd
// (rows) f32. sum may alias a or b, out may alias a or b; out must not alias sum. With
// norm_fusion() == on and an eligible row (the one-pass kernels' rule above: C a multiple of
// 16 / sizeof(act) up to 1024, every pointer 16-byte aligned) one kernel reads a and b once
// and writes sum, out and rstd once (4 a bytes per element + 4 per row); anything else runs
// residual_forward then rmsnorm_forward (whichever SPEEDRUN_RMSNORM selects).
// NOT YET RUN ON A GPU.
void residual_rmsnorm_forward(DType act, void* sum, void* out, float* rstd, const void* a, const void* b,
                              const float* gains, int64_t rows, int64_t channels, float eps);
// Whether residual_rmsnorm_forward with these (device) pointers takes the fused kernel:
// norm_fusion() is on, `channels` fits the one-pass layout for `act`, every pointer is
// 16-byte aligned. Tests assert it, so that a fallback cannot pass for the fused kernel.
bool residual_rmsnorm_fuses(DType act, int64_t channels, std::initializer_list<const void*> pointers);
// Whether model::Gpt's residual adds go through the fused kernel above (and its QK-norm and
// rotary through the fused kernels of kernels/ops/qk_norm_rotary.cu, below). The environment
// variable SPEEDRUN_FUSE_NORMS=1|0 (read once, at the first call; the model's storage choice
// reads it when a model is built or planned, so a typo stops a run before it starts) chooses;
// unset or 0 means off until the fused kernel has passed on a GPU; another value is refused
// (UserError, naming the variable: exit status 1).
enum class NormFusion { off, on };
NormFusion norm_fusion();
// Overrides the environment's choice (tests compare both); returns the previous norm_fusion().
NormFusion set_norm_fusion(NormFusion fusion);

// --- rotary (kernels/ops/rotary.cu) -----------------------------------------------------------
void rotary_forward(DType act, void* out, const void* x, const float* cos, const float* sin, int64_t batch,
                    int64_t seq, int64_t heads, int64_t head_dim);
void rotary_backward(DType act, void* dx, const void* dout, const float* cos, const float* sin, int64_t batch,
                     int64_t seq, int64_t heads, int64_t head_dim);

// --- QK-norm fused with rotary (kernels/ops/qk_norm_rotary.cu) -------------------------------
// x, out, dout, dx (B, T, H, D) of type `act`; rstd (B T H) f32; cos, sin f32 tables with rows
// of D / 2 (rotary_forward's). Forward: rstd = 1 / sqrt(mean(x^2) + eps) per head row, n = x
// rstd rounded to act, out = rotary(n); backward: u = rotary^T(dout) rounded to act, dx =
// rstd u - rstd^3 x (u . x) / D. The intermediate roundings are those of the unfused
// qk_norm + rotary kernels. out may alias x; dx may alias dout or x. head_dim 64 or 128 only
// (std::invalid_argument otherwise). Used by ops::qk_norm_rotary_forward/backward when
// qk_norm_rotary_fuses(head_dim): norm_fusion() is on and head_dim is 64 or 128.
// NOT YET RUN ON A GPU.
bool qk_norm_rotary_fuses(int64_t head_dim);
void qk_norm_rotary_forward(DType act, void* out, float* rstd, const void* x, const float* cos, const float* sin,
                            int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float eps);
void qk_norm_rotary_backward(DType act, void* dx, const void* dout, const void* x, const float* rstd,
                             const float* cos, const float* sin, int64_t batch, int64_t seq, int64_t heads,
                             int64_t head_dim);

// --- embedding (kernels/ops/embedding.cu) -----------------------------------------------------
// out (rows, channels) of type `act`; table (vocab, channels) of type `table_type`
// (f32 master weights, or bf16). A token outside [0, vocab) gives a row of NaN.
void embedding_forward(DType act, void* out, const int32_t* tokens, DType table_type, const void* table,
                       int64_t rows, int64_t channels, int64_t vocab);
// dtable (vocab, channels) f32 += rows of dout, deterministic: the tokens are sorted
// stably (CUB radix sort), then each vocabulary row sums its tokens' rows in token order.
// Tokens outside [0, vocab) are ignored.
void embedding_backward(float* dtable, const int32_t* tokens, DType act, const void* dout, int64_t rows,
                        int64_t channels, int64_t vocab);

// --- cross-entropy with its soft cap (kernels/ops/cross_entropy.cu) --------------------------------
void softcap_forward(DType act, void* out, const void* z, int64_t n, const SoftCap& cap);
// losses (rows) f32; dz may be null or alias z. A target outside [0, vocab) gives a NaN loss
// (and a NaN gradient row).
// bf16 z with head_kernel() == fused and vocab <= kFusedMaxVocab runs the one-pass kernel
// (the row staged in shared memory; kernels/ops/cross_entropy.cu), else the two-sweep one.
void softcap_cross_entropy(float* losses, DType act, void* dz, const void* z, const int32_t* targets, int64_t rows,
                           int64_t vocab, const SoftCap& cap, float grad_scale);

// --- the loss sum kept on the device (kernels/ops/loss_sum.cu) -----------------------------------
// *total = (overwrite ? 0 : *total) + sum of losses[0..n) in double, in a fixed order (one
// block: strided per-thread sums, then a fixed tree), no host synchronization. total: one
// double in device memory. Never run on a GPU yet.
void add_sum_of_losses(double* total, const float* losses, int64_t n, bool overwrite);
// *total on the host, after everything issued on stream() (synchronizes).
double read_f64(const double* total);
// Which loss head the model runs with bf16 activations on CUDA (model::head_loss,
// src/model/gpt.cpp). `legacy`: the head product writes an f32 logit chunk, the two-sweep
// cross-entropy overwrites it with f32 dlogits, a conversion pass writes a bf16 copy for the
// head's backward products. `fused`: the product writes bf16 logits (as upstream's bf16
// head), and the one-pass kernel above writes bf16 dlogits over them in place: no f32
// (rows x vocab) tensor, no conversion pass, a third of the chunk memory. The environment
// variable SPEEDRUN_HEAD=fused|legacy (read once, at the first call) chooses; unset means
// legacy until the fused kernel has passed on a GPU; another value is refused (UserError,
// naming the variable: exit status 1).
enum class HeadKernel { legacy, fused };
HeadKernel head_kernel();
// Overrides the environment's choice (tests compare both); returns the previous head_kernel().
// A model reads the choice when it is built (it decides the logit chunk's dtype).
HeadKernel set_head_kernel(HeadKernel kernel);
// The widest row the one-pass kernel takes: 2 * vocab bytes of shared memory per block
// (sm_90 allows 227 KiB; 98.3 KiB for the padded GPT-2 vocabulary, 50,304).
inline constexpr int64_t kFusedMaxVocab = 110592;  // 216 KiB of bf16
bool fused_cross_entropy_fits(int64_t vocab);

// --- attention (kernels/ops/attention.cu) -----------------------------------------------------
// q, k, v, out (B, T, H, D) of type `act`; lse (B, H, T) f32. head_dim 64 or 128.
// mask: null for causal, else record #26's document and window mask (kernels/ops/attention_mask.h;
// mask->doc (B, T) i32 on the device or null, mask->seq = T). A masked call takes the kernels
// a causal one would (attention_kernel() below: tensor-core, CUDA-core or flash, f32 always
// CUDA-core), each instantiated with the mask; all skip the (query tile, key tile) blocks the
// mask hides without loading them. NOT YET RUN ON A GPU with a mask.
void attention_forward(DType act, void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                       int64_t seq, int64_t heads, int64_t head_dim, float scale, const DocWindowMask* mask = nullptr);
void attention_backward(DType act, void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                        const void* v, const void* out, const float* lse, int64_t batch, int64_t seq, int64_t heads,
                        int64_t head_dim, float scale, const DocWindowMask* mask = nullptr);
// The head dims the attention kernels are instantiated for: the one list that every check
// (the trainer, bench, validate-config, compare, the op's own check) and every message
// naming the supported dims is derived from. It must match the kernels' dispatch on
// head_dim (kernels/ops/attention.cu, attention_tc.cu, attention_flash.cu).
inline constexpr int64_t kAttentionHeadDims[] = {64, 128};
constexpr bool attention_supports_head_dim(int64_t head_dim) {
  for (const int64_t d : kAttentionHeadDims)
    if (d == head_dim) return true;
  return false;
}
// kAttentionHeadDims as a phrase for messages: "64 and 128".
inline std::string attention_head_dims_text() {
  std::string text;
  const size_t n = std::size(kAttentionHeadDims);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) text += i + 1 == n ? " and " : ", ";
    text += std::to_string(kAttentionHeadDims[i]);
  }
  return text;
}

// bf16 attention runs on the tensor cores (kernels/ops/attention_tc.cu: mma.sync bf16 tiles,
// fp32 accumulation and softmax statistics) unless the environment variable
// SPEEDRUN_ATTENTION (read once, at the first attention call) says otherwise: `simt` selects
// the fp32 CUDA-core kernels of kernels/ops/attention.cu, `flash` the FlashAttention-2-class
// kernels of kernels/ops/attention_flash.cu (opt-in until they have passed on a GPU: cp.async
// pipelining, ldmatrix, one backward kernel with dQ accumulated by fp32 atomics, so dq is not
// bitwise reproducible; it takes B T H D floats of cuda::workspace()). f32 attention always
// uses the CUDA-core kernels. Another value than "simt", "tc", "flash" or empty is refused
// (UserError, naming the variable: exit status 1).
enum class AttentionKernel { tensor_core, simt, flash };
// The kernels bf16 attention uses now: the override if one is set, else the environment's.
AttentionKernel attention_kernel();
// Overrides the environment's choice (tests compare each against the CPU); returns the
// previous attention_kernel(). Not synchronized with attention calls on other threads.
AttentionKernel set_attention_kernel(AttentionKernel kernel);
// Whether attention_forward/backward with these (device) pointers goes to the tensor-core
// kernels: act is bf16, attention_kernel() is tensor_core and every pointer is 16-byte
// aligned (the tiles are loaded 8 elements at a time).
bool use_tensor_core_attention(DType act, std::initializer_list<const void*> pointers);
// Whether they go to the flash kernels: act is bf16, attention_kernel() is flash and every
// pointer is 16-byte aligned (cp.async and ldmatrix move 16 bytes). When flash is selected
// but a pointer is not aligned, the call falls back to the CUDA-core kernels and the first
// such call in the process says so on stderr.
bool use_flash_attention(DType act, std::initializer_list<const void*> pointers);
// The tensor-core kernels themselves (bf16 q, k, v, out, dout, dq, dk, dv; same shapes,
// semantics and head dims as attention_forward/backward); called by those two.
void attention_forward_tc(void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                          int64_t seq, int64_t heads, int64_t head_dim, float scale);
void attention_backward_tc(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                           const void* v, const void* out, const float* lse, int64_t batch, int64_t seq,
                           int64_t heads, int64_t head_dim, float scale);
// The same under record #26's mask (attention_mask.h), for attention_forward/backward's masked calls.
void attention_forward_tc_masked(void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                                 int64_t seq, int64_t heads, int64_t head_dim, float scale, const DocWindowMask& mask);
void attention_backward_tc_masked(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                                  const void* v, const void* out, const float* lse, int64_t batch, int64_t seq,
                                  int64_t heads, int64_t head_dim, float scale, const DocWindowMask& mask);

// --- linear through cuBLASLt (kernels/ops/linear.cu) --------------------------------------------
// y = x W^T (+ b): x (rows, in), w (out, in) of type `act`; y (rows, out) of type `out_type`
// (`act`, or f32 for bf16 inputs: the LM head's logits); b null, or of type `bias_type`:
// f32, or out_type (a bf16 bias for a bf16 output: the model's bf16 copy, which cuBLASLt's
// bias epilogue needs); another pairing is std::invalid_argument.
void linear_forward(DType act, DType out_type, void* y, const void* x, const void* w, const void* b,
                    DType bias_type, int64_t rows, int64_t in, int64_t out);
// dx = (or +=) dy W  (type act);  dw += dy^T x  (f32);  db += column sums of dy (f32).
void linear_backward(DType act, void* dx, float* dw, float* db, const void* dy, const void* x, const void* w,
                     int64_t rows, int64_t in, int64_t out, bool accumulate_dx);
// `batch` linear layers that read the same x (an attention layer's q, k and v) as ONE
// strided-batched cuBLASLt product (SPEEDRUN_GEMM_EPILOGUE=fused; not yet run on a GPU).
// Layer i's weight (out, in), bias (out), output (rows, out), dy (rows, out), dw and db lie
// *_stride elements after layer i - 1's. Forward: y_i = x W_i^T + b_i, the bias through the
// epilogue (so of the output's type, 16-byte aligned with its stride). Weight gradients:
// dw_i += dy_i^T x, db_i += column sums of dy_i (db may be null). Each returns false, having
// done nothing, when the batched form cannot run (no cuBLASLt algorithm for it, or a bias
// the epilogue cannot take): the caller then runs the layers one by one.
bool linear_forward_batched(DType act, void* y, int64_t y_stride, const void* x, const void* w, int64_t w_stride,
                            const void* b, DType bias_type, int64_t b_stride, int64_t batch, int64_t rows, int64_t in,
                            int64_t out);
bool linear_weight_grad_batched(DType act, float* dw, int64_t dw_stride, float* db, int64_t db_stride,
                                const void* dy, int64_t dy_stride, const void* x, int64_t batch, int64_t rows,
                                int64_t in, int64_t out);
// The bias halves of the linear op, by kernel: y[r, c] += b[c] (y rows x cols of type act;
// b f32 or of type act), and db[c] += sum_r dy[r, c], deterministic (fixed reduction order).
void bias_add(DType act, void* y, const void* b, DType bias_type, int64_t rows, int64_t cols);
void bias_grad(DType act, float* db, const void* dy, int64_t rows, int64_t cols);

// --- record #26's FP8 head (kernels/ops/fp8_head.cu; never run on a GPU yet) -------------------
// q (rows, cols) and qt (cols, rows) (null: not written) of type `kind` (e4m3 or e5m2) =
// fp8(x / scale), x (rows, cols) of type `in` (f32 or bf16): the quotient in f32 (IEEE
// division), one round-to-nearest-even conversion with .satfinite (overflow gives +-max, as
// ops::fp8_round with saturate). round_bf16_first: x is rounded to bf16 before the division
// (upstream's mm_backward receives the bf16 gradient of its bf16 output).
void fp8_quantize(DType kind, void* q, void* qt, DType in, const void* x, int64_t rows, int64_t cols, float scale,
                  bool round_bf16_first);
// y (m, n) = alpha a b^T + beta y through cuBLASLt: a (m, k) and b (n, k) row-major FP8 (e4m3
// or e5m2, not both e5m2), both K-major as Hopper's FP8 products require; y of type out_type
// (f32 or bf16); fp32 accumulation, fast_accum as CUBLASLT_MATMUL_DESC_FAST_ACCUM. m, n and k
// multiples of 16, a and b 16-byte aligned (std::invalid_argument otherwise).
void fp8_gemm_tn(DType out_type, void* y, DType a_type, const void* a, DType b_type, const void* b, int64_t m,
                 int64_t n, int64_t k, float alpha, float beta, bool fast_accum);
// y[i] = bf16(y[i]) in place (round to nearest even; the f32 holds the bf16 value).
void round_to_bf16_values(float* y, int64_t n);
// How the bf16 linear layers treat their biases. `separate`: bias_add after the product
// (the f32 bias, two roundings of the bf16 output) and the column-sum kernel for the bias
// gradient. `fused`: cuBLASLt's epilogues (kernels/ops/linear.cuh): CUBLASLT_EPILOGUE_BIAS
// with a bf16 bias (the model keeps bf16 copies of its biases for it: model/gpt.cpp) and the
// bias gradient from the weight-gradient product (CUBLASLT_EPILOGUE_BGRADB, falling back to
// the column sums where cuBLASLt has no algorithm for it), and the model's q, k and v
// projections as one strided-batched product each way (ops::linear_forward_qkv). f32
// outputs always take the f32 bias through the epilogue. The environment variable SPEEDRUN_GEMM_EPILOGUE=fused|separate
// (read once, at the first call) chooses; unset means separate until the fused path has
// passed on a GPU (it has not yet run on one); another value is refused (UserError, naming
// the variable: exit status 1).
enum class GemmEpilogue { separate, fused };
GemmEpilogue gemm_epilogue();
// Overrides the environment's choice (tests compare both); returns the previous
// gemm_epilogue(). Not synchronized with linear calls on other threads. A model keeps bf16
// bias copies only if fused was chosen when it was built (else its bf16 layers get the f32
// bias, which the separate kernel adds whatever is chosen).
GemmEpilogue set_gemm_epilogue(GemmEpilogue epilogue);

// --- convert (kernels/ops/convert.cu) --------------------------------------------------------------
// dst = src elementwise between f32 and bf16 (round to nearest even), or a copy.
void convert(DType dst_type, void* dst, DType src_type, const void* src, int64_t n);
// Fills n elements of type `type` with a quiet NaN (tests poison outputs with it).
void fill_nan(DType type, void* dst, int64_t n);

}  // namespace speedrun::cuda
