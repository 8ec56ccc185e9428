// The ops layer: every operation the GPT needs, forward and backward side by side,
// declared once for all devices. Each function checks its tensors' shapes, then
// dispatches on their device and dtype: CPU tensors of f32 (the model) or f64 (the
// finite-difference tests) go to the templated implementations in ops/cpu/, CUDA
// tensors to kernels/. Model code calls only these functions.
//
// Conventions
// - Activations are row-major (N, C) with N = B*T tokens; (B, T, H, D) for heads.
// - Linear weights are (out, in) as in PyTorch: y = x W^T + b.
// - Parameter gradients (dW, db, dgains, dtable) are ACCUMULATED (+=), so that
//   micro-batches add up; the caller zeroes them once per optimizer step.
// - Activation gradients are WRITTEN, except where a flag says `accumulate`: the
//   residual stream's gradient is summed from several branches.
// - An empty Tensor means "absent" (no bias, no gains, no gradient wanted).
#pragma once

#include <array>

#include <cstdint>

#include "core/softcap.h"
#include "core/tensor.h"

namespace speedrun::ops {

// --- embedding ------------------------------------------------------------------
// out[n, :] = table[tokens[n], :]; tokens (N) i32, table (V, C), out (N, C).
void embedding_forward(Tensor out, const Tensor& tokens, const Tensor& table);
// dtable[tokens[n], :] += dout[n, :], deterministic (same result for any thread count).
void embedding_backward(Tensor dtable, const Tensor& tokens, const Tensor& dout);

// --- RMSNorm over the last dimension ----------------------------------------------
// out = x * rstd * gains, rstd[n] = 1 / sqrt(mean_c x[n,c]^2 + eps); gains (C) or empty.
// x, out (N, C) (out may alias x); rstd (N) is saved for the backward.
void rmsnorm_forward(Tensor out, Tensor rstd, const Tensor& x, const Tensor& gains, double eps);
// The residual add and the next norm in one call: sum = a + b (the residual stream, kept
// for the backward), then rmsnorm_forward(out, rstd, sum, gains, eps). a, b, sum, out (N, C)
// of one floating dtype; gains (C) or empty; rstd (N). sum may alias a or b and out may alias
// a or b; out must not overlap sum (std::invalid_argument). CPU, and CUDA unless
// cuda::norm_fusion() is on: residual_forward then rmsnorm_forward, bitwise. CUDA with the
// fusion on: one kernel (kernels/ops/rmsnorm.cu; not yet run on a GPU) that computes the
// norm from the rounded sum, as the two calls do.
void residual_rmsnorm_forward(Tensor sum, Tensor out, Tensor rstd, const Tensor& a, const Tensor& b,
                              const Tensor& gains, double eps);
// dx = (or +=, with accumulate) d/dx; dgains += sum_n dout * x * rstd (when not empty).
void rmsnorm_backward(Tensor dx, Tensor dgains, const Tensor& dout, const Tensor& x, const Tensor& gains,
                      const Tensor& rstd, bool accumulate_dx);

// --- linear: y = x W^T + b -------------------------------------------------------------
// x (N, in), w (out, in), b (out) or empty, y (N, out). b has the parameters' dtype (f32
// with bf16 activations), or on CUDA, for a bf16 y, bf16 (cuBLASLt's bias epilogue:
// cuda::gemm_epilogue()).
void linear_forward(Tensor y, const Tensor& x, const Tensor& w, const Tensor& b);
// dx = (or +=) dy W; dw += dy^T x; db += sum_n dy. Any of dx, dw, db may be empty.
void linear_backward(Tensor dx, Tensor dw, Tensor db, const Tensor& dy, const Tensor& x, const Tensor& w,
                     bool accumulate_dx);
// Three linear layers reading one x (an attention layer's q, k and v): y[i] = x w[i]^T + b[i],
// and backward dx = (or +=) sum_i dy[i] w[i], dw[i] += dy[i]^T x, db[i] += sum_n dy[i], with
// every argument as for linear_forward / linear_backward. The results are those of the three
// single calls in order i = 0, 1, 2 (on the CPU exactly those calls). On CUDA with
// SPEEDRUN_GEMM_EPILOGUE=fused, when the three layers have one shape and their y, w, b (and
// dy, dw, db) each follow one another at one stride in memory (the model's parameter layout
// and arenas place them so), the forward is ONE strided-batched product and so are the
// weight gradients (cuda::linear_forward_batched, linear_weight_grad_batched); dx stays
// three products.
void linear_forward_qkv(const std::array<Tensor, 3>& y, const Tensor& x, const std::array<Tensor, 3>& w,
                        const std::array<Tensor, 3>& b);
void linear_backward_qkv(Tensor dx, const std::array<Tensor, 3>& dw, const std::array<Tensor, 3>& db,
                         const std::array<Tensor, 3>& dy, const Tensor& x, const std::array<Tensor, 3>& w,
                         bool accumulate_dx);

// --- QK-norm: RMSNorm without gains over each head's head_dim ------------------------
// x, out (N, H*D) viewed as (N*H, D); rstd (N*H).
void qk_norm_forward(Tensor out, Tensor rstd, const Tensor& x, int64_t head_dim, double eps);
void qk_norm_backward(Tensor dx, const Tensor& dout, const Tensor& x, const Tensor& rstd, int64_t head_dim);

// --- rotary (half-truncated) ---------------------------------------------------------------
// x, out (B, T, H, D), out may alias x. cos, sin (T, D/2) f32 tables: for the pair
// (x1, x2) = (x[..., j], x[..., j + D/2]) at position t:
//   y1 = x1 cos + x2 sin,  y2 = -x1 sin + x2 cos     (cos = cos[t, j], sin = sin[t, j])
void rotary_forward(Tensor out, const Tensor& x, const Tensor& cos, const Tensor& sin);
// The transpose rotation: dx1 = dy1 cos - dy2 sin, dx2 = dy1 sin + dy2 cos. dx may alias dout.
void rotary_backward(Tensor dx, const Tensor& dout, const Tensor& cos, const Tensor& sin);
// Fills cos/sin (T, D/2) for head_dim D: freq_j = (1/base)^(j/(D/4-1)) for j < D/4,
// 0 for D/4 <= j < D/2; theta = t * freq_j computed in fp32 as upstream.
void rotary_tables(Tensor cos, Tensor sin, int64_t head_dim, double base);
// QK-norm then rotary, and their backward, as one call each (model::Gpt's q and k).
// x, out, dout, dx (B, T, H, D); rstd (B T H) in the parameters' dtype; cos, sin as
// rotary_forward's. Forward: qk_norm_forward(out, rstd, x, D, eps) then rotary_forward(out,
// out, cos, sin); out may alias x. Backward: rotary_backward(dx, dout, cos, sin) then
// qk_norm_backward(dx, dx, x, rstd, D); dx may alias dout but not x; dout is not written
// unless it is dx. CPU, and CUDA unless cuda::qk_norm_rotary_fuses(D): those calls, bitwise. CUDA
// with the fusion on (SPEEDRUN_FUSE_NORMS=1, head_dim 64 or 128): one kernel each way
// (kernels/ops/qk_norm_rotary.cu; not yet run on a GPU).
void qk_norm_rotary_forward(Tensor out, Tensor rstd, const Tensor& x, const Tensor& cos, const Tensor& sin,
                            double eps);
void qk_norm_rotary_backward(Tensor dx, const Tensor& dout, const Tensor& x, const Tensor& rstd, const Tensor& cos,
                             const Tensor& sin);

// --- causal attention -----------------------------------------------------------------------
// Keys a query may see besides causality (record26: ../shared/specs/model-record26.md, "Attention
// mask"). Key s is kept for query t of the same sequence when s <= t and
//   - doc_ids[b, s] == doc_ids[b, t]                      (when doc_ids is given), and
//   - t / block_size - s / block_size < window_blocks     (when window_blocks > 0),
// i.e. the key lies in one of the window_blocks nearest blocks at or before the query's block.
// doc_ids (B, T) i32, nondecreasing along each sequence (document numbers, the running count of
// separators), on q's device (on CUDA the order is a precondition, not checked: the kernels'
// tile skipping relies on it). The kept keys of query t are then one run [start(t), t], start(t)
// nondecreasing in t, which is how the CPU kernels use it. An empty mask is plain causal.
struct AttentionMask {
  Tensor doc_ids;
  int64_t block_size = 0;
  int64_t window_blocks = 0;
  bool causal_only() const { return doc_ids.empty() && window_blocks <= 0; }
};

// q, k, v, out (B, T, H, D); lse (B, H, T) f32: log-sum-exp of each query's scaled
// scores, saved for the backward (no T x T matrix is kept).
//   out[b,t,h,:] = sum_{s kept for t} softmax_s(scale * q[b,t,h,:].k[b,s,h,:]) v[b,s,h,:]
// On CUDA a mask other than causal runs the same kernels as causal attention instantiated with
// it (kernels/ops/attention_mask.h), which skip the tiles it hides; NOT YET RUN ON A GPU.
void attention_forward(Tensor out, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       const AttentionMask& mask = {});
// dq, dk, dv written (B, T, H, D); `mask` as in the forward.
void attention_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, double scale,
                        const AttentionMask& mask = {});

// Inference against cached keys (model/kv_cache.h): q, out (B, n, H, D) are the queries of
// the last n of S positions, k, v (B, S, H, D) the keys and values of all S (n <= S); query
// i, at position S - n + i, attends keys 0..S - n + i. No lse is kept (no backward). Per
// query the same arithmetic as attention_forward: with equal inputs, equal bits. CPU only
// (std::logic_error on CUDA tensors): `speedrun sample` runs on the CPU.
void attention_decode(Tensor out, const Tensor& q, const Tensor& k, const Tensor& v, double scale);

// --- ReLU^2 ---------------------------------------------------------------------------------
// out = relu(x)^2 (out may alias x only in the forward of inference).
void relu2_forward(Tensor out, const Tensor& x);
// dx = dout * 2 relu(x). dx may alias dout.
void relu2_backward(Tensor dx, const Tensor& dout, const Tensor& x);
// Both from the pre-activation x in one pass: g = relu(x)^2 (relu2_forward's value) and
// dx = dout * 2 relu(x) (relu2_backward's), for a model that stores x only and rebuilds g
// for mlp.proj's weight gradient (cuda::relu2_storage()). g may alias x, dx may alias dout;
// g must not alias dout nor dx.
void relu2_backward_recompute(Tensor dx, Tensor g, const Tensor& dout, const Tensor& x);

// --- residual add -----------------------------------------------------------------------------
// out = a + b (out may alias a or b).
void residual_forward(Tensor out, const Tensor& a, const Tensor& b);
// da += dout; db += dout (either may be empty).
void residual_backward(Tensor da, Tensor db, const Tensor& dout);

// --- scaled sums and dot products (record26's learned scalars) --------------------------------
// out = alpha * x + beta * y (y may be empty: out = alpha * x); out may alias x or y. On CUDA
// (f32, bf16) alpha and beta are used as floats.
void scaled_sum(Tensor out, double alpha, const Tensor& x, double beta, const Tensor& y);
// sum_i x[i] * y[i] over every element, accumulated in double in a fixed order (the same value
// for any thread count): the gradient of a scalar that multiplies a whole tensor. On CUDA
// another fixed order (kernels/ops/scale.cu: the same bits run to run), and the call waits for
// the stream: the result is read back to the host.
double dot(const Tensor& x, const Tensor& y);

// --- dtype conversion ---------------------------------------------------------------------
// dst = src elementwise, same number of elements, same device. CPU: equal dtypes (a copy).
// CUDA: f32 and bf16 either way (round to nearest even), or a copy. The model makes its
// bf16 weight copies and the LM head's bf16 logit gradient with it.
void convert(Tensor dst, const Tensor& src);

// --- FP8 (record #26's FP8 head: emulated on the CPU, ops/cpu/fp8.h; cuBLASLt on CUDA, kernels/ops/fp8_head.cu) --
// The OCP FP8 formats: e4m3 (E4M3FN: max 448, no infinity) and e5m2 (max 57344, IEEE-like).
enum class Fp8Kind { e4m3, e5m2 };
// out = fp8(x / scale) elementwise, x and out f32 (same shape; out may alias x): the
// quotient is computed in f32 (x / f32(scale)), then rounded once to the nearest FP8 value,
// ties to even, subnormals kept; out holds that FP8 value as an f32 (not multiplied back by
// scale). Overflow (a value rounding beyond the max, or an infinity): saturate = true gives
// +-max, as the hardware conversions with .satfinite (PTX cvt.rn.satfinite.e4m3x2.f32 /
// __nv_cvt_float_to_fp8(.., __NV_SATFINITE, ..), which Triton's compiled casts and a
// cuBLASLt head use); saturate = false gives torch's eager x.to(torch.float8_*) (c10
// fp8e4m3fn_from_fp32_value / fp8e5m2_from_fp32_value): NaN for e4m3, +-inf for e5m2. NaN
// stays NaN; a zero keeps its sign.
void fp8_round(Tensor out, const Tensor& x, double scale, Fp8Kind kind, bool saturate);

// Record #26's FP8 head product, y = x w^T (upstream's nanogpt::mm and nanogpt::mm_backward
// custom ops by @YouJiacheng, KellerJordan/modded-nanogpt train_gpt.py at commit 345b2fb,
// lines 26-103), emulated: the rounding exactly, the products with f32 accumulation (BLAS;
// the GPU accumulates in its own order, use_fast_accum in the forward).
struct Fp8HeadScales {
  double x_s = 0.0, w_s = 0.0, grad_s = 0.0;  // record #26: sqrt(768)/448, 24/448, 1/448
  bool saturate = true;                      // overflow rule of fp8_round
};
// CUDA only (every tensor empty on the CPU): the copies cuBLASLt's FP8 products need. On
// Hopper an FP8 product takes both operands K-major ("TN", kernels/ops/fp8_head.cu), so the
// backward reads xq and wq transposed and the gradient both ways; the quantization kernels
// write these copies as they write xq, wq and the gradient.
//   xqt (C, N) e4m3, wqt (C, V) e4m3       written by fp8_head_forward (wqt with wq)
//   g (N, V) e5m2, gt (V, N) e5m2          scratch of fp8_head_backward
struct Fp8HeadCuda {
  Tensor xqt, wqt, g, gt;
};
// Forward. x (N, C), w (V, C), y (N, V), xq (N, C), wq (V, C), all f32 on the CPU. CUDA: x
// and w f32 or bf16, xq and wq e4m3, y f32 (bf16 values) or bf16; N, C and V multiples of 16
// (cuBLASLt's FP8 rule: 16-byte aligned leading dimensions), else std::invalid_argument.
//   xq = e4m3(x / x_s), wq = e4m3(w / w_s)                (saved for the backward)
//   y  = bf16((xq wq^T) * (x_s * w_s))                     (_scaled_mm, out_dtype bf16)
// y holds bf16 values in f32 (upstream's logits.float()). w may be empty: wq then already
// holds e4m3(w / w_s) (an earlier call's, e.g. for the next chunk of rows) and is only read.
void fp8_head_forward(Tensor y, Tensor xq, Tensor wq, const Tensor& x, const Tensor& w, const Fp8HeadScales& s,
                      const Fp8HeadCuda& cuda = {});
// Backward from dy (N, V) f32, the gradient of y:
//   g  = e5m2(bf16(dy) / grad_s)     (upstream's op receives the bf16 gradient of its bf16 output)
//   dx = (or +=, accumulate_dx) bf16((g wq) * (grad_s * w_s))           (N, C), bf16 values in f32
//   dw += (g^T xq) * (x_s * grad_s)                                        (V, C), f32
// Only xq and wq are read: x and w themselves are never used again, as upstream saves
// only x_f8 and w_f8. dx or dw may be empty. CUDA: dy f32 or bf16, dx bf16 or f32 (bf16
// values; accumulate_dx needs a bf16 dx), dw f32; the products read cuda.wqt and cuda.xqt
// (xq and wq themselves only for their shapes).
void fp8_head_backward(Tensor dx, Tensor dw, const Tensor& dy, const Tensor& xq, const Tensor& wq,
                       const Fp8HeadScales& s, bool accumulate_dx, const Fp8HeadCuda& cuda = {});

// --- soft-capped cross-entropy, SUM reduction -------------------------------------------------
// The cap (kind, cap, denominator) is described in core/softcap.h.
using speedrun::SoftCap;
// The capped logits: out = softcap(z). z, out (N, V).
void softcap_forward(Tensor out, const Tensor& z, const SoftCap& cap);
// Fused loss and gradient in one pass over each row of the raw logits z (N, V):
//   losses[n] = logsumexp_v softcap(z[n,v]) - softcap(z[n, targets[n]])
//   dz[n, v]  = grad_scale * (softmax(softcap(z[n]))_v - [v == target]) * softcap'(z[n,v])
// dz may alias z, or be empty (evaluation: losses only). targets (N) i32, all < V.
// losses (N) f32 (f64 for f64 inputs).
void softcap_cross_entropy(Tensor losses, Tensor dz, const Tensor& z, const Tensor& targets, const SoftCap& cap,
                           double grad_scale);
// The sum of the per-row losses in double, in row order: the same value on every machine and
// thread count (losses (N) f32 or f64, on the CPU).
double sum_losses(const Tensor& losses);
// total (1) f64 on the losses' device: total[0] = (overwrite ? 0 : total[0]) + the sum of
// losses (N) f32, without a host synchronization. CPU: the sum is sum_losses's (row order,
// double), so adding micro-batches here gives the bits of adding their sum_losses on the
// host. CUDA: one block sums in double in a fixed order (strided per thread, then a fixed
// tree): deterministic, but not row order (differs from sum_losses by double rounding,
// ~1e-16 relative). Never run on a GPU yet.
void add_sum_of_losses(Tensor total, const Tensor& losses, bool overwrite);
// The value of a one-element f64 tensor on the host (CUDA: waits for cuda::stream(), then
// copies 8 bytes: synchronizes; call it once per step).
double read_scalar_f64(const Tensor& total);

}  // namespace speedrun::ops
