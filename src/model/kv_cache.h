// Incremental inference for the Track 3 GPT (model/gpt.h) with a KV cache: the keys
// (after QK-norm and rotary) and values of every position read so far are kept per
// layer, so that each new token costs one row through the network plus its attention
// over the cache, instead of a forward over the whole context.
//
// The arithmetic is the training forward's (the same ops, f32, on the CPU): RMSNorm,
// linear layers, QK-norm, rotary at each token's absolute position in the context,
// causal attention (ops::attention_decode: per query, the same arithmetic as
// attention_forward), ReLU^2, the capped head. The only differences from
// Gpt::forward_logits are the GEMMs' row counts (OpenBLAS may sum in another order for
// one row than for many), so the logits agree to fp32 rounding, not bitwise
// (tests/unit/test_kv_cache.cpp).
//
// The context holds at most model.seq_len tokens: the model was trained on positions
// 0..seq_len-1 only (positions restart at 0 for every sequence). `speedrun sample`
// decides what to do when it fills (model/generate.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "model/gpt.h"

namespace speedrun::model {

class KvDecoder {
 public:
  // `model` lives on the CPU and outlives the decoder; its parameters are read at every
  // call, so changing them invalidates the cache (call reset()). Allocates the cache,
  // 2 x n_layer x seq_len x n_head x head_dim floats, and scratch for seq_len rows.
  // Throws UserError for a model on another device.
  explicit KvDecoder(Gpt& model);

  const Gpt& model() const { return model_; }
  int64_t capacity() const { return capacity_; }  // model.seq_len
  int64_t length() const { return length_; }      // tokens in the context
  void reset() { length_ = 0; }

  // Reads `tokens` (ids < padded_vocab_size) at positions length() .. length()+n-1 and
  // writes the capped logits (f32, padded_vocab_size per position, the padding included)
  // of the last of them to `logits`, or, with all_positions, of every one of them in
  // order ((n, padded_vocab_size) row-major). n >= 1 and length() + n <= capacity(),
  // else std::invalid_argument (the caller keeps the context within capacity).
  void append(std::span<const int32_t> tokens, float* logits, bool all_positions = false);

 private:
  Gpt& model_;
  int64_t capacity_ = 0, length_ = 0;
  std::vector<float> k_cache_, v_cache_;  // per layer (capacity, n_head * head_dim)
  std::vector<float> cos_, sin_;          // rotary tables (capacity, head_dim / 2)
  // Scratch for up to capacity rows.
  std::vector<float> x_, h_, q_, k_, qr_, y_, tmp_, f_, rstd_, qk_rstd_;
};

}  // namespace speedrun::model
