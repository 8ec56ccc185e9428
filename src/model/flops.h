// Model FLOPs per token, counted as ../shared/specs/performance.md does: 6 per matmul
// parameter (forward + backward) plus causal attention's 6 * L * T * attn_dim (for record26
// an upper bound: its windows and documents leave most of the causal triangle out).
#pragma once

#include <cstdint>

#include "config/run_config.h"

namespace speedrun::model {

inline int64_t matmul_params(const config::ModelConfig& m) {
  const int64_t d = m.d_model, hd = m.attn_dim(), f = m.mlp_hidden();
  // record26: layer 7 (when there is one) has no attention; its value embeddings are lookups.
  const int64_t attention_layers = m.arch == "record26" && m.n_layer > 7 ? m.n_layer - 1 : m.n_layer;
  return attention_layers * 4 * d * hd + m.n_layer * 2 * d * f + d * m.padded_vocab_size;
}

inline double flops_per_token(const config::ModelConfig& m) {
  return 6.0 * static_cast<double>(matmul_params(m)) +
         6.0 * static_cast<double>(m.n_layer) * static_cast<double>(m.seq_len) * static_cast<double>(m.attn_dim());
}

}  // namespace speedrun::model
