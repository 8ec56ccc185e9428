// Model FLOPs per token, counted as ../shared/specs/performance.md does: 6 per matmul
// parameter (forward + backward) plus causal attention's 6 * L_attn * T * attn_dim, L_attn the
// layers that have attention (for record26 an upper bound: its windows and documents leave
// most of the causal triangle out; the overload with the keys it actually sees is the count
// for it).
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

// Attention: 12 attn_dim FLOPs per visible (query, key) pair -- forward q.k and p v (2 attn_dim
// each), backward dv, dp, dq, dk (2 attn_dim each) -- so causal attention over T tokens, whose
// queries see (T + 1) / 2 keys on average, is the 6 T attn_dim per layer above.
// keys_per_token: the visible keys of a query, averaged over the tokens and summed over the
// layers with attention (Record26::attention_keys_per_token for record26's mask: the pairs the
// mask keeps, not the ones the kernels' partial tiles compute and discard).
inline double flops_per_token(const config::ModelConfig& m, double keys_per_token) {
  return 6.0 * static_cast<double>(matmul_params(m)) + 12.0 * static_cast<double>(m.attn_dim()) * keys_per_token;
}

inline double flops_per_token(const config::ModelConfig& m) {
  return 6.0 * static_cast<double>(matmul_params(m)) +
         6.0 * static_cast<double>(attention_layers(m)) * static_cast<double>(m.seq_len) * static_cast<double>(m.attn_dim());
}

}  // namespace speedrun::model
