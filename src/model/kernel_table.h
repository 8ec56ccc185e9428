// The ops of one micro-batch's forward + backward as model::Gpt runs them
// (src/model/gpt.cpp: forward_trunk, head_loss, backward_trunk; with model.fp8_head the head
// rows are record #26's FP8 head, model/head.h), each with its call shape,
// how many times a micro-batch calls it, and the work one call must do: FLOPs for the
// products and attention, the fewest bytes it must move (each input read once, each output
// written once) for the memory-bound ops. `speedrun bench --kernels` (src/cli/bench_kernels.cpp)
// times one call of each on CUDA and multiplies by the count. Plain C++: the CPU tests check
// the counts against the model's FLOP formula (model/flops.h).
//
// FLOP conventions: a product m x k by k x n is 2 m n k; a linear layer's backward is two
// products (dx and dW); causal attention counts half the square, forward 4 B H T^2 D / 2 and
// backward 2.5 times the forward (FlashAttention's convention: five products against two),
// so TFLOP/s figures compare with the FlashAttention papers'. model/flops.h counts attention
// as 3 times its forward instead (6 L T H D per token), hence attention rows sum to 7/6 of
// that term.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/tensor.h"

namespace speedrun::model {

enum class KernelOp {
  embedding_fwd,  // (rows, in = d)
  rmsnorm_fwd,    // (rows, in = d)
  linear_fwd,     // (rows, in) x (out, in)^T + bias
  qk_norm_fwd,    // (rows, in = H D), head_dim groups
  rotary_fwd,     // (rows, in = H D)
  attention_fwd,  // (B, T, H, D): rows = B T, in = H D
  residual_fwd,   // (rows, in)
  residual_rmsnorm_fwd,  // (rows, in = d): sum = a + b and rmsnorm(sum) in one pass (SPEEDRUN_FUSE_NORMS=1)
  relu2_fwd,      // (rows, in = f)
  head_fwd,       // (rows = chunk, in = d) -> f32 logits (rows, out = V)
  cross_entropy,  // soft-capped loss + dlogits in place over (rows = chunk, out = V) f32
  cross_entropy_fused,  // the same over bf16 logits in one pass (the fused head)
  convert_dlogits,  // f32 -> act over (rows = chunk, out = V)
  head_bwd,       // dhf and dW, db of the head
  linear_bwd,     // dx, dW, db
  relu2_bwd,      // (rows, in = f), in place
  relu2_bwd_recompute,  // (rows, in = f): g = relu(f)^2 and dx in one pass (relu^2 recomputed)
  rmsnorm_bwd,    // (rows, in = d), dgains; accumulate: dx +=
  attention_bwd,
  rotary_bwd,
  qk_norm_bwd,
  embedding_bwd,  // dtable from (rows, in = d)
  // model.fp8_head only, in place of head_fwd, convert_dlogits and head_bwd:
  head_fp8_fwd,   // quantize hf (and the weight) to e4m3, FP8 product -> f32 logits (bf16 values)
  head_fp8_bwd,   // quantize dlogits to e5m2, FP8 products dhf and dW
  // SPEEDRUN_FUSE_NORMS=1 only, in place of qk_norm_fwd + rotary_fwd and rotary_bwd + qk_norm_bwd:
  qk_norm_rotary_fwd,  // (rows, in = H D): QK-norm and rotary in one pass
  qk_norm_rotary_bwd,  // (rows, in = H D): rotary^T and the QK-norm backward in one pass
};

struct KernelRow {
  std::string name;     // e.g. "linear fwd 768->768 (q, k, v)"
  KernelOp op;
  int64_t rows = 0;     // rows of the call's input (tokens, or logit rows of a head chunk)
  int64_t in = 0;       // input width
  int64_t out = 0;      // output width of a product (linear, head); 0 otherwise
  bool accumulate = false;  // rmsnorm_bwd, linear_bwd: dx += (as the model's calls)
  double count = 0;     // calls per micro-batch (the head's: N / chunk rows, fractional)
  double flops = 0;     // per call; 0 for a memory-bound op
  double bytes = 0;     // per call: the fewest bytes moved; 0 for a compute-bound op
  // The products run on FP8 tensor cores (model.fp8_head): rated against the FP8 ceiling
  // (cuda::measure_fp8_gemm_ceiling), not the bf16 one. FLOPs are counted as for any product
  // (2 m n k per product); FP8's higher rate is the ceiling's, not the count's.
  bool fp8 = false;
};

// The rows for a micro-batch of `batch_seqs` sequences with activations of dtype `act`, an
// embedding read in `embedding` (f32 or bf16) and head chunks of `head_chunk_rows` rows
// (model::Gpt::head_chunk_rows). Throws std::invalid_argument for non-positive sizes.
// `fused_head` and `relu2_recompute` are model::Gpt::Storage's choices: the fused head's rows
// are the product into bf16 logits and the one-pass cross-entropy (2 a bytes per logit: read
// once, written once; no conversion row); recompute's backward row reads f and dout and
// writes g and dx (4 a bytes per element instead of 3 a). `fused_norms` (cuda::norm_fusion()):
// the 2 L residual adds and the 2 L norms that read their sums become 2 L fused calls that
// read a and b and write the sum and the normed row (4 a bytes per element + 4 per row for
// rstd); the embedding's norm and layer 0's first norm stay plain rmsnorm rows. QK-norm and
// rotary become one row each way (2 L calls): forward reads x and writes out (2 a bytes per
// element) + 4 per head row (rstd), backward reads dout and x and writes dx (3 a) + 4 per
// head row; the f32 cos/sin tables (T D / 2 each, cached) are not counted.
std::vector<KernelRow> micro_batch_kernel_rows(const config::ModelConfig& m, int64_t batch_seqs, DType act,
                                               DType embedding, int64_t head_chunk_rows, bool fused_head = false,
                                               bool relu2_recompute = false, bool fused_norms = false);

}  // namespace speedrun::model
