// A bounded memo from pre-token bytes to their BPE ids, one per thread. Natural text
// repeats a small set of words, so most pieces are found here and skip BPE entirely.
// There is no eviction order (no LRU bookkeeping on the hot path): when the cache is
// full it is emptied, and the common words come back within a few lines of text.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace speedrun::data {

class PieceCache {
 public:
  static constexpr size_t kMaxPieceBytes = 64;  // longer pieces are not cached

  explicit PieceCache(size_t max_entries = size_t{1} << 16);

  // The cached ids of `piece`, or false.
  bool find(std::string_view piece, std::span<const uint16_t>* ids) const;

  // Remembers the ids of `piece` (at most kMaxPieceBytes long, not yet cached).
  void insert(std::string_view piece, std::span<const uint16_t> ids);

  void clear();

  // Which tokenizer the contents belong to (see Gpt2Tokenizer's serial number).
  uint64_t owner() const { return owner_; }
  void set_owner(uint64_t owner) { owner_ = owner; }

  size_t size() const { return entries_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_offset = 0;
    uint32_t ids_offset = 0;
    uint16_t key_length = 0;  // 0 = empty slot (pieces are never empty)
    uint16_t ids_length = 0;
  };
  size_t first_slot(uint64_t hash) const { return static_cast<size_t>(hash) & (slots_.size() - 1); }

  size_t max_entries_;
  size_t entries_ = 0;
  uint64_t owner_ = 0;
  std::vector<Slot> slots_;   // open addressing, at most half full
  std::string keys_;          // all cached pieces, back to back
  std::vector<uint16_t> ids_; // all cached ids, back to back
};

}  // namespace speedrun::data
