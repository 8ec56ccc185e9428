// Document-aligned batch starts: record #26's BOS-aligned training loader
// (KellerJordan/modded-nanogpt train_gpt.py at commit 345b2fb, record 2025-07-12
// "BosAlign": find_batch_starts and distributed_data_generator(align_to_bos=True)).
//
// Each step reads `count` sequences of `seq_len` tokens (+1 for the last target), each
// starting at a document start (token 50256, which GPT-2 shards put before every
// document), the sequences in stream order and at least seq_len apart. Upstream's rule,
// kept exactly so that the same shards give the same batches:
//   search the window tokens[pos, pos + 2*batch) for BOS positions b_0 < b_1 < ...;
//   start = b_0; for each later b_i: if b_i - start >= seq_len, accept `start` and, once
//   `count` starts are accepted, the step's span is b_i - pos (the next step searches
//   from b_i); then start = b_i.
// So a start is accepted only when a later BOS in the window confirms that its sequence
// does not reach into the next accepted one; documents longer than seq_len are skipped
// past (only their first seq_len + 1 tokens are read). Upstream asserts when the window
// holds too few such starts; the loader turns that into a UserError (loader.h).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace speedrun::data {

struct AlignedStarts {
  std::vector<int64_t> starts;  // `count` positions, ascending, each holding the BOS token
  int64_t span = 0;             // tokens the step consumes: the next search starts at pos + span
};

// Upstream's find_batch_starts over tokens[pos, window_end) (window_end = pos + 2 * the
// global batch upstream). Returns nullopt when the window holds no BOS, or fewer than
// `count` confirmed starts (`count` >= 1, `seq_len` >= 1). Positions are absolute.
std::optional<AlignedStarts> find_aligned_starts(const uint16_t* tokens, int64_t pos, int64_t window_end,
                                                 int64_t count, int64_t seq_len);

}  // namespace speedrun::data
