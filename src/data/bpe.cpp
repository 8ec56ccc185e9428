#include "data/bpe.h"

#include <algorithm>
#include <limits>
#include <queue>

namespace speedrun::data {

namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();

// Pieces up to this many ids use the quadratic algorithm; its per-step cost is a scan
// over a short array, far cheaper than heap upkeep for typical words.
constexpr size_t kQuadraticMaxIds = 64;

uint32_t rank_of(const MergeTable& merges, uint16_t left, uint16_t right) {
  const MergeRule* rule = merges.find(left, right);
  return rule ? rule->rank : kNoRank;
}

}  // namespace

bool MergeTable::add(uint16_t left, uint16_t right, MergeRule rule) {
  if (find(left, right)) return false;
  if ((size_ + 1) * 2 > slots_.size()) grow();  // keep the load factor at most 1/2
  const uint32_t key = pack(left, right);
  size_t i = slot_of(key);
  while (slots_[i].used) i = (i + 1) & mask_;
  slots_[i] = Slot{key, true, rule};
  ++size_;
  return true;
}

void MergeTable::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
  mask_ = slots_.size() - 1;
  for (const Slot& slot : old) {
    if (!slot.used) continue;
    size_t i = slot_of(slot.key);
    while (slots_[i].used) i = (i + 1) & mask_;
    slots_[i] = slot;
  }
}

void bpe_merge(const MergeTable& merges, std::vector<uint16_t>& ids) {
  if (ids.size() <= kQuadraticMaxIds)
    bpe_merge_quadratic(merges, ids);
  else
    bpe_merge_heap(merges, ids);
}

void bpe_merge_quadratic(const MergeTable& merges, std::vector<uint16_t>& ids) {
  size_t n = ids.size();
  if (n < 2) return;
  // ranks[k] belongs to the pair (ids[k], ids[k+1]); on the stack for short pieces,
  // which is nearly every call.
  uint32_t stack_ranks[kQuadraticMaxIds];
  std::vector<uint32_t> heap_ranks(n - 1 > kQuadraticMaxIds ? n - 1 : 0);
  uint32_t* ranks = heap_ranks.empty() ? stack_ranks : heap_ranks.data();
  for (size_t k = 0; k + 1 < n; ++k) ranks[k] = rank_of(merges, ids[k], ids[k + 1]);
  while (n > 1) {
    const size_t k = static_cast<size_t>(std::min_element(ranks, ranks + (n - 1)) - ranks);
    if (ranks[k] == kNoRank) break;
    ids[k] = merges.find(ids[k], ids[k + 1])->merged;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(k) + 1);
    std::copy(ranks + k + 1, ranks + (n - 1), ranks + k);
    --n;
    // Only the pairs touching the merged token changed.
    if (k > 0) ranks[k - 1] = rank_of(merges, ids[k - 1], ids[k]);
    if (k + 1 < n) ranks[k] = rank_of(merges, ids[k], ids[k + 1]);
  }
}

void bpe_merge_heap(const MergeTable& merges, std::vector<uint16_t>& ids) {
  const size_t n = ids.size();
  if (n < 2) return;
  // A doubly linked list over the original positions; a merge keeps the left node.
  constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
  std::vector<uint32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = i == 0 ? kNone : static_cast<uint32_t>(i - 1);
    next[i] = i + 1 == n ? kNone : static_cast<uint32_t>(i + 1);
  }
  // A candidate pair, ordered by rank and then position (leftmost first). It records
  // the ids it was made for; when it is popped after its nodes changed, it is stale.
  struct Candidate {
    uint32_t rank;
    uint32_t left;
    uint16_t left_id;
    uint16_t right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push_pair = [&](uint32_t left) {
    if (left == kNone || next[left] == kNone) return;
    const uint32_t rank = rank_of(merges, ids[left], ids[next[left]]);
    if (rank != kNoRank) heap.push({rank, left, ids[left], ids[next[left]]});
  };
  for (uint32_t i = 0; i + 1 < n; ++i) push_pair(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const uint32_t right = next[c.left];
    if (!alive[c.left] || right == kNone || ids[c.left] != c.left_id || ids[right] != c.right_id) continue;
    ids[c.left] = merges.find(c.left_id, c.right_id)->merged;
    alive[right] = false;
    next[c.left] = next[right];
    if (next[right] != kNone) prev[next[right]] = c.left;
    push_pair(prev[c.left]);
    push_pair(c.left);
  }
  size_t out = 0;
  for (uint32_t i = 0; i != kNone; i = next[i]) ids[out++] = ids[i];
  ids.resize(out);
}

}  // namespace speedrun::data
