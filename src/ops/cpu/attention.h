// Causal softmax attention over (batch, seq, heads, head_dim) tensors, computed without
// a seq x seq matrix: the forward keeps only each query's log-sum-exp, the backward
// recomputes the probabilities from q, k and that lse.
//
// Every output row is owned by one task and accumulated in a fixed order (keys in
// increasing position, in blocks of kKeyBlock), so results do not depend on the thread
// count or the schedule. Dot products accumulate in T (fp32 for the model) with
// kLanes partial sums (see reductions.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "ops/cpu/reductions.h"

namespace speedrun::ops::cpu {

inline constexpr int64_t kKeyBlock = 64;

// The first key each query may see under an ops::AttentionMask (ops.h): for query t of
// sequence b, start[b * seq + t] = max(first position of t's document, first position of
// the block window_blocks - 1 blocks before t's). docs (batch, seq) nondecreasing per row or
// null (no document mask); window_blocks <= 0: no window. Since a document is one run of
// positions and the window ends at t, the kept keys are exactly [start, t]; start is
// nondecreasing in t (each term is), which the backward's key-side loop relies on.
inline void attention_key_starts(std::vector<int64_t>& start, const int32_t* docs, int64_t batch, int64_t seq,
                                 int64_t block_size, int64_t window_blocks) {
  start.assign(static_cast<size_t>(batch * seq), 0);
  for (int64_t b = 0; b < batch; ++b) {
    int64_t doc_start = 0;
    for (int64_t t = 0; t < seq; ++t) {
      if (docs && t > 0 && docs[b * seq + t] != docs[b * seq + t - 1]) doc_start = t;
      int64_t s = doc_start;
      if (window_blocks > 0) s = std::max(s, (t / block_size - window_blocks + 1) * block_size);
      start[static_cast<size_t>(b * seq + t)] = s;
    }
  }
}

// Addressing of one (batch, head) slice of a (B, T, H, D) tensor: row t starts at
// base + t * stride, with stride = H * D between positions.
struct HeadSlice {
  int64_t base;
  int64_t stride;
};
inline HeadSlice head_slice(int64_t b, int64_t h, int64_t seq, int64_t heads, int64_t head_dim) {
  return {(b * seq * heads + h) * head_dim, heads * head_dim};
}

// out[t] = sum_{s<=t} softmax_s(scale q_t . k_s) v_s;  lse[b, h, t] = log sum_{s<=t} exp(scale q_t . k_s),
// the sums over s in [start(t), t] when key_start (batch * k_seq, attention_key_starts over the
// key positions) is given.
// Online softmax per query: for each block of keys, its scores, the running maximum m, the
// running sum l of exp(score - m) and the running output o (rescaled when m grows).
//
// The queries may be the last q_seq of k_seq positions (q_seq <= k_seq): query i, at
// position k_seq - q_seq + i, attends keys 0..k_seq - q_seq + i. q, out are (B, q_seq, H, D),
// k, v (B, k_seq, H, D), lse (B, H, q_seq). q_seq == k_seq is the training forward; q_seq <
// k_seq the decoding of new tokens against cached keys (model/kv_cache.h). A query's
// arithmetic depends only on its position and its keys, not on q_seq: the same query
// against the same keys gives the same bits either way.
template <class T>
void attention_forward_at(T* out, T* lse, const T* q, const T* k, const T* v, int64_t batch, int64_t q_seq,
                          int64_t k_seq, int64_t heads, int64_t head_dim, T scale, const int64_t* key_start = nullptr) {
  const int64_t tasks = batch * heads * q_seq;
  const int64_t first = k_seq - q_seq;  // position of query 0
  const int64_t work = batch * heads * q_seq * (first + (q_seq + 1) / 2) * head_dim;
#pragma omp parallel if (work >= kParallelThreshold)
  {
    std::vector<T> acc(head_dim);
    T scores[kKeyBlock];
    // Queries late in the sequence have more keys: dynamic scheduling balances the triangle.
#pragma omp for schedule(dynamic, 8)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bh = task / q_seq, i = task % q_seq, t = first + i;
      const int64_t b = bh / heads, h = bh % heads;
      const HeadSlice qs = head_slice(b, h, q_seq, heads, head_dim);
      const HeadSlice hs = head_slice(b, h, k_seq, heads, head_dim);
      const T* qt = q + qs.base + i * qs.stride;
      T m = -std::numeric_limits<T>::infinity();
      T l = 0;
      std::fill(acc.begin(), acc.end(), T(0));
      const int64_t s_begin = key_start ? key_start[b * k_seq + t] : 0;
      for (int64_t s0 = s_begin; s0 <= t; s0 += kKeyBlock) {
        const int64_t s1 = std::min(t + 1, s0 + kKeyBlock);
        T block_max = -std::numeric_limits<T>::infinity();
        for (int64_t s = s0; s < s1; ++s) {
          const T score = scale * dot(qt, k + hs.base + s * hs.stride, head_dim);
          scores[s - s0] = score;
          block_max = std::max(block_max, score);
        }
        if (block_max > m) {
          const T rescale = std::exp(m - block_max);  // 0 for the first block (m = -inf)
          l *= rescale;
          for (int64_t d = 0; d < head_dim; ++d) acc[d] *= rescale;
          m = block_max;
        }
        for (int64_t s = s0; s < s1; ++s) {
          const T p = std::exp(scores[s - s0] - m);
          l += p;
          axpy(acc.data(), p, v + hs.base + s * hs.stride, head_dim);
        }
      }
      T* ot = out + qs.base + i * qs.stride;
      for (int64_t d = 0; d < head_dim; ++d) ot[d] = acc[d] / l;
      lse[bh * q_seq + i] = m + std::log(l);
    }
  }
}

template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t batch, int64_t seq,
                       int64_t heads, int64_t head_dim, T scale, const int64_t* key_start = nullptr) {
  attention_forward_at(out, lse, q, k, v, batch, seq, seq, heads, head_dim, scale, key_start);
}

// With p_ts = exp(scale q_t . k_s - lse_t), dp_ts = dout_t . v_s, D_t = dout_t . out_t and
// ds_ts = p_ts (dp_ts - D_t) for s <= t (and s >= start(t) under a mask):
//   dq_t = scale sum_{s<=t} ds_ts k_s,   dk_s = scale sum_{t>=s} ds_ts q_t,   dv_s = sum_{t>=s} p_ts dout_t.
// Two passes, one owning query rows (dq), one owning key rows (dk, dv): each p_ts is
// computed twice, the price of a deterministic result without atomics or a seq x seq buffer.
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                        const T* lse, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, T scale,
                        const int64_t* key_start = nullptr) {
  const int64_t tasks = batch * heads * seq;
  const int64_t work = batch * heads * seq * seq * head_dim;
  std::vector<T> delta(static_cast<size_t>(tasks));  // D_t per (b, h, t)
#pragma omp parallel if (work >= kParallelThreshold)
  {
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bh = task / seq, t = task % seq;
      const HeadSlice hs = head_slice(bh / heads, bh % heads, seq, heads, head_dim);
      const int64_t at = hs.base + t * hs.stride;
      delta[task] = dot(dout + at, out + at, head_dim);
    }
    std::vector<T> acc(head_dim), acc2(head_dim);
    // dq: one task per query row t, keys s = 0..t.
#pragma omp for schedule(dynamic, 8)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bh = task / seq, t = task % seq;
      const HeadSlice hs = head_slice(bh / heads, bh % heads, seq, heads, head_dim);
      const T* qt = q + hs.base + t * hs.stride;
      const T* dot_t = dout + hs.base + t * hs.stride;
      const T lse_t = lse[task], delta_t = delta[task];
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t s = key_start ? key_start[(bh / heads) * seq + t] : 0; s <= t; ++s) {
        const T* ks = k + hs.base + s * hs.stride;
        const T p = std::exp(scale * dot(qt, ks, head_dim) - lse_t);
        const T ds = p * (dot(dot_t, v + hs.base + s * hs.stride, head_dim) - delta_t);
        axpy(acc.data(), ds, ks, head_dim);
      }
      T* dqt = dq + hs.base + t * hs.stride;
      for (int64_t d = 0; d < head_dim; ++d) dqt[d] = scale * acc[d];
    }
    // dk, dv: one task per key row s, queries t = s..seq-1 (under a mask, while start(t) <= s:
    // start is nondecreasing, so the queries that see s are one run from s).
#pragma omp for schedule(dynamic, 8)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bh = task / seq, s = task % seq;
      const HeadSlice hs = head_slice(bh / heads, bh % heads, seq, heads, head_dim);
      const T* ks = k + hs.base + s * hs.stride;
      const T* vs = v + hs.base + s * hs.stride;
      std::fill(acc.begin(), acc.end(), T(0));   // dk
      std::fill(acc2.begin(), acc2.end(), T(0)); // dv
      const int64_t* starts = key_start ? key_start + (bh / heads) * seq : nullptr;
      for (int64_t t = s; t < seq && (!starts || starts[t] <= s); ++t) {
        const T* qt = q + hs.base + t * hs.stride;
        const T* dot_t = dout + hs.base + t * hs.stride;
        const T p = std::exp(scale * dot(qt, ks, head_dim) - lse[bh * seq + t]);
        const T ds = p * (dot(dot_t, vs, head_dim) - delta[bh * seq + t]);
        axpy(acc2.data(), p, dot_t, head_dim);
        axpy(acc.data(), ds, qt, head_dim);
      }
      T* dks = dk + hs.base + s * hs.stride;
      T* dvs = dv + hs.base + s * hs.stride;
      for (int64_t d = 0; d < head_dim; ++d) {
        dks[d] = scale * acc[d];
        dvs[d] = acc2[d];
      }
    }
  }
}

}  // namespace speedrun::ops::cpu
