#include "data/bos_align.h"

#include "data/shard.h"

namespace speedrun::data {

std::optional<AlignedStarts> find_aligned_starts(const uint16_t* tokens, int64_t pos, int64_t window_end,
                                                 int64_t count, int64_t seq_len) {
  AlignedStarts out;
  int64_t start = -1;  // the candidate start: the latest BOS not yet confirmed
  for (int64_t i = pos; i < window_end; ++i) {
    if (tokens[i] != kEndOfText) continue;
    if (start < 0) {
      start = i;  // b_0
      continue;
    }
    // Upstream moves the candidate only to a BOS that confirms it (`start = end` sits
    // inside the `if`): a BOS closer than seq_len to the candidate is passed over.
    if (i - start < seq_len) continue;
    out.starts.push_back(start);
    if (static_cast<int64_t>(out.starts.size()) == count) {
      out.span = i - pos;
      return out;
    }
    start = i;
  }
  return std::nullopt;
}

}  // namespace speedrun::data
