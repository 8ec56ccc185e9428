// Host entry points of the CUDA kernels, called by the ops layer (src/ops/ops_*.cpp) for
// tensors on Device::cuda. Plain C++: no CUDA header is included, so CPU code may include
// this file; the definitions exist only in CUDA builds (SPEEDRUN_HAVE_CUDA), and the ops
// layer calls them only there.
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

#include "core/tensor.h"
#include "ops/ops.h"

namespace speedrun::cuda {

// --- elementwise (kernels/elementwise.cu) ------------------------------------------------
void relu2_forward(DType act, void* out, const void* x, int64_t n);
void relu2_backward(DType act, void* dx, const void* dout, const void* x, int64_t n);
void residual_forward(DType act, void* out, const void* a, const void* b, int64_t n);
// dst += src
void accumulate(DType act, void* dst, const void* src, int64_t n);
// y[r, c] += b[c]  (y rows x cols)
void bias_add(DType act, void* y, const float* b, int64_t rows, int64_t cols);
// db[c] += sum_r dy[r, c], deterministic (fixed reduction order)
void bias_grad(DType act, float* db, const void* dy, int64_t rows, int64_t cols);

// --- RMSNorm and QK-norm (kernels/rmsnorm.cu) --------------------------------------------
// gains may be null. rstd (rows) f32.
void rmsnorm_forward(DType act, void* out, float* rstd, const void* x, const float* gains, int64_t rows,
                     int64_t channels, float eps);
// dx may be null; dgains may be null (else += , deterministic).
void rmsnorm_backward(DType act, void* dx, float* dgains, const void* dout, const void* x, const float* gains,
                      const float* rstd, int64_t rows, int64_t channels, bool accumulate_dx);

// --- rotary (kernels/rotary.cu) -----------------------------------------------------------
void rotary_forward(DType act, void* out, const void* x, const float* cos, const float* sin, int64_t batch,
                    int64_t seq, int64_t heads, int64_t head_dim);
void rotary_backward(DType act, void* dx, const void* dout, const float* cos, const float* sin, int64_t batch,
                     int64_t seq, int64_t heads, int64_t head_dim);

// --- embedding (kernels/embedding.cu) -----------------------------------------------------
// out (rows, channels) of type `act`; table (vocab, channels) of type `table_type`
// (f32 master weights, or bf16). A token outside [0, vocab) gives a row of NaN.
void embedding_forward(DType act, void* out, const int32_t* tokens, DType table_type, const void* table,
                       int64_t rows, int64_t channels, int64_t vocab);
// dtable (vocab, channels) f32 += rows of dout, deterministic: the tokens are sorted
// stably (CUB radix sort), then each vocabulary row sums its tokens' rows in token order.
// Tokens outside [0, vocab) are ignored.
void embedding_backward(float* dtable, const int32_t* tokens, DType act, const void* dout, int64_t rows,
                        int64_t channels, int64_t vocab);

// --- soft cap and cross-entropy (kernels/cross_entropy.cu) --------------------------------
void softcap_forward(DType act, void* out, const void* z, int64_t n, const ops::SoftCap& cap);
// losses (rows) f32; dz may be null or alias z. A target outside [0, vocab) gives a NaN loss
// (and a NaN gradient row).
void softcap_cross_entropy(float* losses, DType act, void* dz, const void* z, const int32_t* targets, int64_t rows,
                           int64_t vocab, const ops::SoftCap& cap, float grad_scale);

// --- attention (kernels/attention.cu) -----------------------------------------------------
// q, k, v, out (B, T, H, D) of type `act`; lse (B, H, T) f32. head_dim 64 or 128.
void attention_forward(DType act, void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                       int64_t seq, int64_t heads, int64_t head_dim, float scale);
void attention_backward(DType act, void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                        const void* v, const void* out, const float* lse, int64_t batch, int64_t seq, int64_t heads,
                        int64_t head_dim, float scale);
// The head dims the attention kernels are instantiated for.
bool attention_supports_head_dim(int64_t head_dim);

// --- linear through cuBLASLt (kernels/gemm.cu) --------------------------------------------
// y = x W^T (+ b): x (rows, in), w (out, in) of type `act`; y (rows, out) of type `out_type`
// (`act`, or f32 for bf16 inputs: the LM head's logits); b f32 or null.
void linear_forward(DType act, DType out_type, void* y, const void* x, const void* w, const float* b, int64_t rows,
                    int64_t in, int64_t out);
// dx = (or +=) dy W  (type act);  dw += dy^T x  (f32);  db += column sums of dy (f32).
void linear_backward(DType act, void* dx, float* dw, float* db, const void* dy, const void* x, const void* w,
                     int64_t rows, int64_t in, int64_t out, bool accumulate_dx);

// --- conversions (kernels/elementwise.cu) ---------------------------------------------------
// dst = src elementwise between f32 and bf16 (round to nearest even), or a copy.
void convert(DType dst_type, void* dst, DType src_type, const void* src, int64_t n);
// Fills n elements of type `type` with a quiet NaN (tests poison outputs with it).
void fill_nan(DType type, void* dst, int64_t n);

}  // namespace speedrun::cuda
