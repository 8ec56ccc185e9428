// The attention masks of the CUDA attention kernels (kernels/ops/attention.cu, the CUDA-core
// kernels, and kernels/ops/attention_flash.cu): which (query t, key s) pairs are allowed, the
// tile-loop bounds that follow, and the classification of a (query tile, key tile) block as
// fully masked (skipped: never loaded), fully visible (no per-element test) or partial.
//
// Plain C++ usable on the host and the device (SPEEDRUN_HD below): the CPU unit test
// tests/unit/ops/test_attention_mask_blocks.cpp checks DocWindowMask against the CPU's dense
// definition (ops::cpu::attention_key_starts), and tests/python/test_attention_mask_blocks.py
// emulates the same classification and the kernels' tile walks in numpy.
//
// Record #26's mask (ops::AttentionMask, src/ops/cpu/attention.h; model-record26.md): query t
// sees key s iff
//   s <= t                                          (causal)
//   and doc[s] == doc[t]                            (same document; doc nondecreasing along t)
//   and t / bs - s / bs < window_blocks             (sliding window of 128-token blocks)
// which is the CPU's s in [start(t), t] with start(t) = max(first position of t's document,
// (t / bs - window_blocks + 1) bs). Because doc is nondecreasing, the documents of a tile
// [x0, x1) are exactly [doc[x0], doc[x1 - 1]]: two reads classify a tile.
//
// Exactness of block(): `masked` exactly when no pair of the block is allowed, `full` exactly
// when every pair is. Why: a block the causal test does not mask either lies wholly below
// the diagonal (k1 - 1 <= q0), where the pair (q0, k1 - 1) is the most permissive for all
// three tests at once (the window and document tests prefer small t and large s), or it
// crosses the diagonal, where a pair (t, t) exists and passes the window and document tests.
// Full: each of the three "all pairs pass" tests is exact, and all pairs pass the conjunction
// iff they pass each. The python emulation checks both claims on random layouts.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SPEEDRUN_HD __host__ __device__
#else
#define SPEEDRUN_HD
#endif

namespace speedrun::cuda {

enum class BlockKind : int { masked, partial, full };

// Record #26's mask. Positions are in [0, T); ranges half-open; the bounds below may be
// supersets of what is visible (the blocks inside them are still classified), never subsets.
// Member functions are templates on the position type: the flash kernels use int, the
// CUDA-core kernels int64_t.
struct DocWindowMask {
  // Document numbers, (B, T) i32 on the device, nondecreasing along each row (unchecked on the
  // device: the caller guarantees it; ops::attention_forward's CPU path checks it), or null
  // for no document mask. In a kernel, at_batch(b) points it at row b.
  const int32_t* doc = nullptr;
  int64_t seq = 0;        // T: the row pitch of doc
  int block_size = 1;     // tokens per window block (> 0)
  int window_blocks = 0;  // <= 0: no window

  // The mask of sequence b (doc advanced to row b).
  SPEEDRUN_HD DocWindowMask at_batch(int64_t b) const {
    DocWindowMask m = *this;
    if (m.doc) m.doc += b * seq;
    return m;
  }
  // Keys that queries [q0, q1) may see: [key_begin, key_end). The window's first key of q0
  // (the document start is left to block(): it would need a search).
  template <class I>
  SPEEDRUN_HD I key_begin(I q0) const {
    if (window_blocks <= 0) return 0;
    const I s = (q0 / block_size - window_blocks + 1) * block_size;
    return s > 0 ? s : 0;
  }
  template <class I>
  SPEEDRUN_HD I key_end(I q1) const {
    return q1;
  }
  // Queries that may see keys [k0, k1): [query_begin, query_end), query_end clamped to seq.
  // Query t sees key k1 - 1 at most while t / bs < (k1 - 1) / bs + window_blocks.
  template <class I>
  SPEEDRUN_HD I query_begin(I k0) const {
    return k0;
  }
  template <class I>
  SPEEDRUN_HD I query_end(I k1, I seq_len) const {
    if (window_blocks <= 0) return seq_len;
    const I e = ((k1 - 1) / block_size + window_blocks) * block_size;
    return e < seq_len ? e : seq_len;
  }
  template <class I>
  SPEEDRUN_HD bool allowed(I t, I s) const {
    if (s > t) return false;
    if (window_blocks > 0 && t / block_size - s / block_size >= window_blocks) return false;
    return !doc || doc[s] == doc[t];
  }
  // The block queries [q0, q1) x keys [k0, k1), both non-empty and within [0, T).
  template <class I>
  SPEEDRUN_HD BlockKind block(I q0, I q1, I k0, I k1) const {
    if (k0 > q1 - 1) return BlockKind::masked;  // every key after every query
    if (window_blocks > 0 && q0 / block_size - (k1 - 1) / block_size >= window_blocks) return BlockKind::masked;
    if (doc && (doc[k1 - 1] < doc[q0] || doc[k0] > doc[q1 - 1])) return BlockKind::masked;  // disjoint documents
    const bool causal_full = k1 - 1 <= q0;
    const bool window_full = window_blocks <= 0 || (q1 - 1) / block_size - k0 / block_size < window_blocks;
    const bool doc_full = !doc || doc[k0] == doc[q1 - 1];
    return causal_full && window_full && doc_full ? BlockKind::full : BlockKind::partial;
  }
};

}  // namespace speedrun::cuda
