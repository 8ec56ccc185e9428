// The LM head and the loss, shared by every architecture: z = hf W^T (+ b), the soft cap,
// the SUM cross-entropy and, with `backward`, the gradients of W, b and hf. The (tokens x
// padded_vocab) logit matrix never exists whole: rows are processed in chunks of
// logits.size(0) rows, the chunk's logits overwritten in place by their gradient. The chunk
// is f32 (the CPU; CUDA's legacy head, which then rounds the gradient into dlogits_act for
// the bf16 products), or bf16 (CUDA's fused head, cuda::head_kernel(): the product writes
// bf16 logits as upstream's bf16 head does, and the one-pass cross-entropy writes the bf16
// gradient over them).
#pragma once

#include <cstdint>

#include "config/run_config.h"
#include "core/softcap.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace speedrun::model {

struct HeadTensors {
  Tensor hf;           // (N, d) the final normed hidden, activation dtype
  Tensor w, b;         // (V, d) the weight as the product reads it (a bf16 copy or the f32 master); (V) or empty
  Tensor dw, db;       // their f32 gradients (accumulated), db empty when b is
  Tensor dhf;          // (N, d) written with `backward`
  Tensor targets;      // (N) i32 on the model's device
  Tensor logits;       // (chunk_rows, V) scratch: f32, or bf16 (the fused head)
  Tensor dlogits_act;  // (chunk_rows, V) the gradient in the activation dtype; empty when logits has it
  Tensor losses;       // (N) f32 per-token losses
};

// The FP8 product (record #26's training head, model.fp8_head): the logits are
// bf16(xq wq^T x_s w_s) instead of hf w^T, the backward upstream's mm_backward (ops.h
// fp8_head_forward/backward). CPU: xq (N, d) and wq (V, d) f32 holding the e4m3 values.
// CUDA: xq, wq e4m3, and `cuda` the transposed and gradient copies (ops::Fp8HeadCuda) for
// one chunk of logits.size(0) rows: xqt (d, chunk), wqt (d, V), g (chunk, V), gt (V, chunk);
// a chunk of fewer rows uses the start of each. Every chunk's row count must be a multiple of
// 16 on CUDA (cuBLASLt's FP8 rule): N and logits.size(0) multiples of 16.
struct Fp8HeadTensors {
  ops::Fp8HeadScales scales;
  Tensor xq, wq;
  ops::Fp8HeadCuda cuda;
};

// Returns the summed loss of the N = hf.size(0) rows (in double, in row order). On CUDA
// reading the sum synchronizes the host with the device.
// fp8: the FP8 product (h.b must be empty) instead of the plain one.
double head_loss(const HeadTensors& h, const SoftCap& cap, bool backward, const Fp8HeadTensors* fp8 = nullptr);
// head_loss without the sum: fills h.losses (and the gradients with `backward`) and leaves
// everything on the model's device (no host synchronization).
void head_losses(const HeadTensors& h, const SoftCap& cap, bool backward, const Fp8HeadTensors* fp8 = nullptr);

// Record #26's fixed FP8 scales (upstream's lm_head = CastedLinear(.., use_fp8=True,
// x_s=(model_dim**0.5)/448, w_s=24/448, grad_s=1/448), train_gpt.py at 345b2fb line 403;
// the spec's "Optimizers"), with the saturating casts (ops.h fp8_round: the compiled and
// hardware conversions).
ops::Fp8HeadScales fp8_head_scales(const config::ModelConfig& m);

// The cap a model config asks for (model.logit_softcap, logit_cap, sigmoid_temperature).
SoftCap softcap_of(const config::ModelConfig& m);

}  // namespace speedrun::model
