// model.arch record26: the modded-nanogpt Track 1 speedrun record #26 (2025-07-12, commit
// 345b2fb; ../shared/specs/model-record26.md), forward and backward written out against
// the ops layer like model::Gpt: no autograd, every saved activation explicit. CPU (f32) and
// CUDA (f32 or bf16 activations; bf16 as model::Gpt: bf16 copies of the matrices, f32 master
// weights and gradients). NOT YET RUN ON A GPU: the CUDA path (masked attention kernels,
// scaled sums and dots, the host round trips below) is compiled only; CudaModel.Record26*
// compare it with the CPU when a device is present.
//
// Host round trips on CUDA, per micro-batch: the tokens, targets and document numbers (computed
// on the host from the tokens) are uploaded; the scalars block (scalars_size floats) is copied
// to the host once per forward, since the scalars scale whole tensors as kernel arguments; every
// scalar gradient is a dot product returned to the host (each synchronizes the stream: ~5 per
// layer), summed there, and the scalars' gradient block is read before and written after the
// backward.
//
//   x = x0 = rmsnorm(embed[tokens])
//   for i in 0..L-1:
//     if i >= L/2: x += skip_w[i - L/2] * skips.pop()          (U-net, last in first out)
//     x = a_i x + b_i x0
//     if i != 7:  x += attn.c_proj(attention(rotary(qknorm(q)), rotary(qknorm(k)), l0_i v + l1_i ve_i))
//                 with q, k, v = rmsnorm(x) qkv_w[0..2]^T; ve_i = value_embeds.j[tokens] or absent
//     x += mlp.c_proj(relu(mlp.c_fc(rmsnorm(x)))^2)
//     if i < L/2: skips.push(x)
//   loss = sum CE(softcap(lm_head(rmsnorm(x))), targets)
// Every rmsnorm is weightless (eps model.rmsnorm_eps, 2^-23); no biases anywhere. The
// attention of layer i is causal, within a document (documents start at model.doc_separator)
// and limited to a window of blocks (ops::AttentionMask) that grows with the run's step.
//
// Layer plan. Upstream hard-codes 12 layers; for other even n_layer >= 6 (tests use small
// models) the rules generalise as upstream's own list expressions do:
//   - value embeddings: upstream's list [ve0, ve1, ve2] + [None] * (L - 6) + [ve0, ve1, ve2],
//     i.e. table j feeds layers j and L - 3 + j;
//   - U-net: n = L // 2 (upstream asserts L even); layer n + k adds skip_w[k] times the output
//     of layer n - 1 - k; skip_w are the first n of L skip weights;
//   - no attention in layer 7 (upstream's `layer_idx != 7`, kept literally: for L <= 7 every
//     layer has attention);
//   - long/short windows: model.window_pattern, one letter per layer (upstream's 12-entry list
//     LSSSLSSLSSSL is the default; config validation requires its length to be n_layer).
// Scalars (one vector, upstream's order): skip_w (L), then (a_i, b_i) per layer (2L), then
// (l0_i, l1_i) per layer (2L), then ones up to a multiple of 8 (upstream pads to a multiple of
// its world size, 8 ranks; 64 for L = 12). Unused entries (skip_w[n..L), layer 7's l0, l1, the
// padding) get zero gradients.
//
// Sequences. Each of the B rows of a micro-batch is one packed stream (upstream: B = 1,
// seq_len 49,152): rotary positions run 0..seq_len-1 over the whole row and documents are
// counted within the row (doc id = running count of separators, the separator opening its
// document).
//
// FP8 head (model.fp8_head): upstream's training head product is FP8 (e4m3 inputs, e5m2
// gradients, fixed scales: model::fp8_head_scales). With the key set, Record26::head_loss runs
// the training product (forward_backward) through ops::fp8_head_forward/backward, which emulate
// the rounding on the CPU and take cuBLASLt's FP8 products on CUDA (never run on a GPU yet; the
// one-byte buffers are in the activation arena, the head chunk a multiple of 16 rows);
// forward_loss and forward_logits (validation, eval, sampling) keep the plain head, as
// upstream's CastedLinear outside `self.training`.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "config/run_config.h"
#include "core/buffer.h"
#include "core/softcap.h"
#include "model/model.h"
#include "model/param_layout.h"

namespace speedrun::model {

// record26's parameters, upstream's names: embed.weight, value_embeds.{0,1,2}.weight (V, d),
// blocks.N.attn.qkv_w (3, H*D, d) and blocks.N.attn.c_proj.weight (d, H*D) for N != 7,
// blocks.N.mlp.c_fc.weight (4d, d), blocks.N.mlp.c_proj.weight (d, 4d), lm_head.weight (V, d),
// scalars (5L rounded up to a multiple of 8). Init (spec, "Parameters"): embeddings N(0, 1);
// qkv_w and c_fc uniform with std 0.5/sqrt(d) (bound sqrt(3) std, upstream's CastedLinear);
// both c_proj and lm_head zero; scalars as above (skip_w 1, a 1, b 0, l0 = l1 = 0.5, padding 1).
ParamLayout record26_layout(const config::ModelConfig& m);

class Record26 final : public Model {
 public:
  // Layer plan queries (see the header comment).
  static bool has_attention(int64_t layer) { return layer != 7; }
  // The value-embedding table layer `layer` adds, or -1.
  static int64_t value_embed_of(const config::ModelConfig& m, int64_t layer);
  // Offsets into the scalars vector.
  static int64_t skip_weight_index(const config::ModelConfig&, int64_t k) { return k; }
  static int64_t block_lambda_index(const config::ModelConfig& m, int64_t layer) { return m.n_layer + 2 * layer; }
  static int64_t attn_lambda_index(const config::ModelConfig& m, int64_t layer) { return 3 * m.n_layer + 2 * layer; }
  static int64_t scalars_size(const config::ModelConfig& m);
  // The long window in blocks at `at` (spec, "Attention mask"): the smallest multiple of
  // attn_block_size tokens that is >= max(1, window_tokens * step / steps), in blocks.
  // std::invalid_argument when `at` gives no run length or a step outside [0, steps].
  static int64_t long_window_blocks(const config::ModelConfig& m, RunPosition at);
  // The window of layer `layer` in blocks: the long one, or for 'S' layers half of it (integer
  // division) but at least 1 -- upstream's short mask at 1 long block is 0 blocks, which its
  // block-mask construction turns into the diagonal block alone (the partial-block count is
  // clamped to >= 1, the full-block count to <= -1, i.e. none): 1 block.
  static int64_t layer_window_blocks(const config::ModelConfig& m, int64_t layer, RunPosition at);
  // The keys a query sees under the mask (causal, same document, the layer's window at `at`),
  // averaged over the B * seq_len tokens and summed over the layers with attention: the
  // attention work model/flops.h counts. Host arithmetic over the tokens' documents.
  static double attention_keys_per_token(const config::ModelConfig& m, const int32_t* tokens, int64_t B,
                                         RunPosition at);

  Record26(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs, DType activations = DType::f32);
  ~Record26() override;
  Record26(const Record26&) = delete;
  Record26& operator=(const Record26&) = delete;

  const config::ModelConfig& config() const override { return cfg_; }
  const ParamLayout& layout() const override { return layout_; }
  Device device() const override { return device_; }
  DType activation_dtype() const override { return act_dtype_; }
  int64_t max_batch_seqs() const override { return max_batch_seqs_; }
  float* params() override { return params_.as<float>(); }
  float* grads() override { return grads_.as<float>(); }

  void init_parameters(uint64_t seed) override;
  void zero_grad() override;
  void weights_changed() override { copies_stale_ = true; }  // the bf16 copies are remade before the next use

  // `at` is required (steps > 0): the attention window depends on it. `ready` hears each
  // parameter once its gradient is final, in the backward's order: lm_head after the head;
  // per layer (L-1 down to 0) mlp.c_proj and mlp.c_fc, then attn.c_proj and attn.qkv_w, and
  // value_embeds.j after layer j (its last contributor; layer L-3+j came before); scalars
  // after layer 0 (every layer adds to them); embed last.
  double forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, LayerInputSink* sink = nullptr,
                          RunPosition at = {}, GradReadySink* ready = nullptr) override;
  double forward_loss(const int32_t* tokens, const int32_t* targets, int64_t B, RunPosition at = {}) override;
  void forward_logits(const int32_t* tokens, int64_t B, float* out, RunPosition at = {}) override;

  size_t activation_bytes() const override;
  size_t parameter_bytes() const override { return params_.bytes(); }
  size_t weight_copy_bytes() const override;

  static size_t plan_activation_bytes(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs,
                                      DType activations);
  // Bytes of the bf16 weight copies (0 with f32 activations).
  static size_t plan_weight_copy_bytes(const config::ModelConfig& cfg, Device device, DType activations);

 private:
  struct Activations;
  struct WeightCopies;
  void forward_trunk(const int32_t* tokens, int64_t B, RunPosition at, LayerInputSink* sink);
  double head_loss(const int32_t* targets, int64_t B, bool backward);
  void backward_trunk(const int32_t* tokens, int64_t B, RunPosition at, GradReadySink* ready);
  // The parameter as the products read it: its bf16 copy, or the f32 master.
  Tensor weight(size_t index);
  void refresh_weight_copies();
  Tensor ids_on(const int32_t* ids, int64_t n, const Tensor& device_buffer) const;
  // The scalars as the forward read them (host copy made by load_scalars at its start).
  float scalar(int64_t index) const;
  // Scalar gradients go to a host copy of the scalars' gradient block, read by
  // load_scalar_grads at the start of the backward and written back by store_scalar_grads at
  // its end: each entry gets at most one addition per backward, as the CPU did in place.
  void add_scalar_grad(int64_t index, double g);
  void load_scalars();
  void load_scalar_grads();
  void store_scalar_grads();

  config::ModelConfig cfg_;
  ParamLayout layout_;
  Device device_;
  DType act_dtype_;
  int64_t max_batch_seqs_;
  SoftCap softcap_;
  Buffer params_, grads_;
  std::unique_ptr<Activations> act_;
  std::unique_ptr<WeightCopies> copies_;
  bool copies_stale_ = true;
  size_t scalars_ = 0;
};

}  // namespace speedrun::model
