// Model FLOPs per token, counted as ../shared/specs/performance.md does: 6 per matmul
// parameter (forward + backward) plus causal attention's 6 * L_attn * T * attn_dim, L_attn the
// layers that have attention (for record26 an upper bound: its windows and documents leave most
// of the causal triangle out).
#pragma once

#include <cstdint>

#include "config/run_config.h"

namespace speedrun::model {

// The layers with attention: record26's layer 7 (when there is one) has none.
inline int64_t attention_layers(const config::ModelConfig& m) {
  return m.arch == "record26" && m.n_layer > 7 ? m.n_layer - 1 : m.n_layer;
}

inline int64_t matmul_params(const config::ModelConfig& m) {
  const int64_t d = m.d_model, hd = m.attn_dim(), f = m.mlp_hidden();
  // record26's value embeddings are lookups, not products.
  return attention_layers(m) * 4 * d * hd + m.n_layer * 2 * d * f + d * m.padded_vocab_size;
}

inline double flops_per_token(const config::ModelConfig& m) {
  return 6.0 * static_cast<double>(matmul_params(m)) +
         6.0 * static_cast<double>(attention_layers(m)) * static_cast<double>(m.seq_len) * static_cast<double>(m.attn_dim());
}

}  // namespace speedrun::model
