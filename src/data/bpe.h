// Byte-pair merging on token ids. A MergeTable maps an adjacent pair (left id, right
// id) to its rank (position in vocab.bpe, lower merges first) and the id of the merged
// token. bpe_merge() repeatedly merges the leftmost pair of lowest rank, which equals
// encoder.py's "merge every occurrence of the best pair, left to right" because a merge
// never uses a token created by a later-ranked merge (checked when vocab.bpe is read).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace speedrun::data {

struct MergeRule {
  uint32_t rank;
  uint16_t merged;
};

// Open-addressing hash table of merge rules, keyed by (left << 16 | right).
class MergeTable {
 public:
  // Adds a rule; returns false (and changes nothing) when the pair already has one.
  bool add(uint16_t left, uint16_t right, MergeRule rule);

  // The rule for a pair, or nullptr.
  const MergeRule* find(uint16_t left, uint16_t right) const {
    if (slots_.empty()) return nullptr;
    const uint32_t key = pack(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (!slot.used) return nullptr;
      if (slot.key == key) return &slot.rule;
    }
  }

  size_t size() const { return size_; }

 private:
  struct Slot {
    uint32_t key = 0;
    bool used = false;
    MergeRule rule{};
  };
  static uint32_t pack(uint16_t left, uint16_t right) { return (uint32_t{left} << 16) | right; }
  size_t slot_of(uint32_t key) const {
    return static_cast<size_t>((uint64_t{key} * 0x9E3779B97F4A7C15ull) >> 32) & mask_;
  }
  void grow();

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// Merges `ids` in place (see the header comment). Chooses the algorithm by length.
void bpe_merge(const MergeTable& merges, std::vector<uint16_t>& ids);

// The two algorithms, exposed so tests can check that they agree:
// quadratic, with a rank per adjacent pair (fastest for the short pieces of text)...
void bpe_merge_quadratic(const MergeTable& merges, std::vector<uint16_t>& ids);
// ...and O(n log n) with a heap and a linked list (for long pieces, e.g. a megabyte
// without spaces).
void bpe_merge_heap(const MergeTable& merges, std::vector<uint16_t>& ids);

}  // namespace speedrun::data
