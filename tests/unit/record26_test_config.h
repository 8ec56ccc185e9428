// The small record #26 model configs the unit tests train (test_record26*.cpp,
// test_cuda_record26.cpp): upstream's structure (value embeddings, U-net skips, layer 7
// without attention when n_layer >= 8, the sigmoid cap 30) at test sizes, a vocabulary of 97
// padded to 128 with token 96 as the document separator, and the whole sequence as the
// longest window.
#pragma once

#include <cstdint>
#include <string>

#include "config/run_config.h"

namespace speedrun::test {

// pattern: one window letter per layer (its length is n_layer); block: attn_block_size.
inline config::ModelConfig record26_test_config(const std::string& pattern, int64_t d_model, int64_t head_dim,
                                                int64_t seq_len, int64_t block) {
  config::ModelConfig m;
  m.arch = "record26";
  m.vocab_size = 97;
  m.padded_vocab_size = 128;
  m.n_layer = static_cast<int64_t>(pattern.size());
  m.d_model = d_model;
  m.n_head = d_model / head_dim;
  m.head_dim = head_dim;
  m.seq_len = seq_len;
  m.doc_separator = 96;
  m.attn_block_size = block;
  m.window_tokens = seq_len;
  m.window_pattern = pattern;
  m.logit_softcap = "sigmoid";
  m.logit_cap = 30;
  return m;
}

// 8 layers (layer 7 without attention; value_embeds.2 feeds layers 2 and 7), d 32, 2 x 16 heads, T 40.
inline config::ModelConfig tiny_record26() { return record26_test_config("LSSLSSLL", 32, 16, 40, 8); }

}  // namespace speedrun::test
