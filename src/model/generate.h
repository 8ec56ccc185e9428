// Text generation from the Track 3 GPT (`speedrun sample`): the KV-cache decoder
// (model/kv_cache.h) and a sampler.
//
// Context. The model knows positions 0..seq_len-1 only, so it reads at most seq_len
// tokens: the context is the tail of (prompt + generated tokens) that starts at `start`,
// which moves only when one more token would not fit: then start = end - seq_len/2 (at
// least one token kept), and the kept half is read again in one prefill. A prompt longer
// than seq_len starts the same way. context_start() states the rule for tests.
//
// Sampling (per step, over token ids below `vocab_limit`: the padded rows of the head are
// never drawn). temperature 0: the first id of largest logit (greedy). Otherwise the
// capped logits z divided by the temperature, softmax in double over the top_k largest
// (0: all; ties at the k-th value broken by lower id), and one draw: u in [0, 1) from
// the top 53 bits of std::mt19937_64(seed) (a generator the C++ standard fixes bit for
// bit, unlike its distributions), the first id in increasing order whose cumulative
// probability exceeds u. So the same checkpoint, prompt, options and seed give the same
// tokens on every machine where the logits are the same.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "model/kv_cache.h"

namespace speedrun::model {

struct SamplingOptions {
  int64_t tokens = 256;       // to generate
  double temperature = 1.0;   // >= 0; 0 = greedy
  int64_t top_k = 0;          // 0 = every id below vocab_limit
  uint64_t seed = 0;
  int64_t vocab_limit = 0;    // ids drawn are below this (model.vocab_size, <= padded_vocab_size)
};

// Where the context starts for a sequence of `length` tokens whose context started at
// `start`, with room for `capacity` tokens (the rule above): `start` while
// length - start <= capacity, else length - max(1, capacity / 2).
int64_t context_start(int64_t start, int64_t length, int64_t capacity);

// One draw from the capped logits `logits` (at least vocab_limit of them) per the rule
// above. Throws std::invalid_argument for bad options.
int32_t pick_token(const float* logits, const SamplingOptions& options, std::mt19937_64& rng);

struct Generation {
  std::vector<int32_t> tokens;  // the generated ids (without the prompt)
  std::vector<float> logits;    // with keep_logits: (tokens, padded_vocab_size), the logits each was drawn from
  int64_t prefills = 0;         // times the context was read whole (1 + context restarts)
  double seconds = 0.0;         // wall time of the decoding (prompt prefill included)
};

// Generates options.tokens tokens after `prompt` (at least one id, each below
// padded_vocab_size), calling on_token(id) as each is drawn (may be empty).
Generation generate(KvDecoder& decoder, const std::vector<int32_t>& prompt, const SamplingOptions& options,
                    bool keep_logits = false, const std::function<void(int32_t)>& on_token = {});

}  // namespace speedrun::model
